//! `cloudtrail:LookupEvents` through the real SDK. moto does not serve LookupEvents (its
//! CloudTrail backend has trails, selectors and tags only), so these tests use the SDK's own
//! mocking crate with records shaped as CloudTrail writes them: the SDK's real deserialiser,
//! retry classifier and pagination run, and so do irsa-aws's cache and CloudTrail rate limit.

mod support;

use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput;
use aws_sdk_cloudtrail::types::Event;
use aws_smithy_mocks::{mock, Rule};
use irsa_aws::AwsFacts;
use irsa_core::assume_history::{subject, AssumeHistory};
use irsa_core::{Issuer, Reason};

const ACCOUNT: &str = "111122223333";
const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const HOST: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

fn facts_with(cloudtrail: &[&Rule]) -> AwsFacts {
    support::facts(support::Mocked {
        cloudtrail,
        ..support::Mocked::default()
    })
}

/// A LookupEvents record as CloudTrail returns one: the event's summary fields and the full
/// event as a JSON string (`CloudTrailEvent`), for a success or a failure.
fn record(minutes_ago: i64, sa: &str, role: &str, error: Option<&str>) -> Event {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let time = now - minutes_ago * 60;
    let when = irsa_core::assume_history::format_timestamp(time);
    let sub = format!("system:serviceaccount:reports:{sa}");
    let provider = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}");
    let (error_fields, response) = match error {
        Some(code) => (
            format!(
                r#""errorCode":"{code}","errorMessage":"Not authorized to perform sts:AssumeRoleWithWebIdentity","#
            ),
            "null".to_string(),
        ),
        None => (
            String::new(),
            format!(
                r#"{{"credentials":{{"accessKeyId":"ASIAEXAMPLE","sessionToken":"redacted","expiration":"Jan 1, 2030, 12:00:00 AM"}},"subjectFromWebIdentityToken":"{sub}","assumedRoleUser":{{"assumedRoleId":"AROAEXAMPLE:botocore-session-1","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/s3-reader/botocore-session-1"}},"provider":"{provider}","audience":"sts.amazonaws.com"}}"#
            ),
        ),
    };
    let json = format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"WebIdentityUser","principalId":"{provider}:sts.amazonaws.com:{sub}","userName":"{sub}","identityProvider":"{provider}"}},"eventTime":"{when}","eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity","awsRegion":"us-east-1","sourceIPAddress":"10.0.1.5","userAgent":"aws-sdk-go-v2/1.30.3","requestParameters":{{"roleArn":"{role}","roleSessionName":"botocore-session-1"}},{error_fields}"responseElements":{response},"eventID":"e1","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"{ACCOUNT}"}}"#
    );
    Event::builder()
        .event_id("e1")
        .event_name("AssumeRoleWithWebIdentity")
        .event_source("sts.amazonaws.com")
        .event_time(aws_smithy_types::DateTime::from_secs(time))
        .cloud_trail_event(json)
        .build()
}

fn page(events: Vec<Event>, next: Option<&str>) -> LookupEventsOutput {
    LookupEventsOutput::builder()
        .set_events(Some(events))
        .set_next_token(next.map(str::to_string))
        .build()
}

#[tokio::test]
async fn events_are_read_page_by_page_within_cloudtrails_rate_and_cached() {
    let pages = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .sequence()
        .output(|| {
            page(
                vec![
                    record(5, "s3-reader", ROLE, Some("AccessDenied")),
                    record(9, "s3-reader", ROLE, Some("AccessDenied")),
                ],
                Some("page-2"),
            )
        })
        .output(|| {
            page(
                vec![record(
                    20,
                    "s3-reader",
                    "arn:aws:iam::111122223333:role/admin",
                    Some("AccessDenied"),
                )],
                Some("page-3"),
            )
        })
        .output(|| {
            page(
                vec![
                    record(90, "s3-reader", ROLE, None),
                    record(95, "other", ROLE, Some("InvalidIdentityToken")),
                ],
                None,
            )
        })
        .build();
    let facts = facts_with(&[&pages]);
    let started = Instant::now();
    let log = facts
        .assume_role_events(ACCOUNT, Duration::from_secs(12 * 3600))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(pages.num_calls(), 3);
    // Two calls a second with no burst: the third page waited about a second.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(log.complete);
    assert_eq!(log.events.len(), 5);
    assert_eq!(log.until - log.since, 12 * 3600);

    let issuer = Issuer::parse(HOST).unwrap();
    let h = AssumeHistory::summarise(
        &log,
        &subject("reports", "s3-reader"),
        Some(&issuer),
        ROLE,
        &[],
    );
    assert_eq!(h.successes(), 1);
    assert_eq!(h.roles[ROLE].ongoing["AccessDenied"], 2);
    let found = h.findings(true);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reason, Reason::WorkloadAssumeFailures);
    assert!(
        found[0].message.contains("role/admin (not the annotated"),
        "{}",
        found[0].message
    );
    assert!(!found[0].message.contains("InvalidIdentityToken"));

    // Every other ServiceAccount of the account is answered from the same read.
    facts
        .assume_role_events(ACCOUNT, Duration::from_secs(12 * 3600))
        .await
        .unwrap();
    assert_eq!(pages.num_calls(), 3);
    assert_eq!(facts.call_stats().calls("LookupEvents"), 3);
}

#[tokio::test]
async fn a_busy_account_is_read_up_to_the_page_bound_and_said_to_be_incomplete() {
    let endless = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .sequence()
        .output(|| page(vec![record(1, "other", ROLE, None)], Some("more")))
        .repeatedly()
        .build();
    let facts = facts_with(&[&endless]);
    let log = facts
        .assume_role_events(ACCOUNT, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(endless.num_calls(), 20, "MAX_PAGES");
    assert!(!log.complete);
    assert_eq!(log.events.len(), 20);
}

#[tokio::test]
async fn a_denied_look_up_is_unknown_names_the_permission_and_is_not_cached() {
    let denied = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .sequence()
        .http_status(
            400,
            Some(
                r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::111122223333:assumed-role/dev/me is not authorized to perform: cloudtrail:LookupEvents"}"#
                    .into(),
            ),
        )
        .repeatedly()
        .build();
    let facts = facts_with(&[&denied]);
    let u = facts
        .assume_role_events(ACCOUNT, Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert_eq!(u.reason, Reason::AwsAccessDenied);
    assert!(u.detail.contains("cloudtrail:LookupEvents"), "{}", u.detail);
    let calls = denied.num_calls();
    assert!(facts
        .assume_role_events(ACCOUNT, Duration::from_secs(3600))
        .await
        .is_err());
    assert!(denied.num_calls() > calls, "a failure is asked again");
}

#[tokio::test]
async fn another_accounts_events_need_a_role_to_assume() {
    let facts = facts_with(&[]);
    let u = facts
        .assume_role_events("444455556666", Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert_eq!(u.reason, Reason::AwsAccessDenied);
    assert!(
        u.detail.contains("--assume-role 444455556666"),
        "{}",
        u.detail
    );
}
