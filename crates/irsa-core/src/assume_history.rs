//! What actually happened: the `AssumeRoleWithWebIdentity` calls CloudTrail recorded for a
//! ServiceAccount's subject, summarised per requested role (successes, failures by error code),
//! and what that says about its running pods — they are failing right now
//! ([`Reason::WorkloadAssumeFailures`]), or they run but never use their web identity
//! ([`Reason::WorkloadsNotUsingWebIdentity`]).
//!
//! Gathering reads one account's events once ([`EventLog`]); [`AssumeHistory::summarise`] keeps
//! only this ServiceAccount's, so what one namespace is told is about its own pods' calls.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::issuer::Issuer;
use crate::reason::Reason;
use crate::workloads::{parse_timestamp, WorkloadFinding};

/// The CloudTrail event name looked up.
pub const EVENT_NAME: &str = "AssumeRoleWithWebIdentity";
/// A pod that has run this long and calls AWS with its web identity has called STS at least
/// once in that time: SDKs refresh the one-hour credentials before they expire, and CloudTrail
/// delivers an event within about 15 minutes.
pub const QUIET_SECONDS: i64 = 75 * 60;
/// CloudTrail's event history keeps 90 days; no window reaches further.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);
/// At most this many distinct requested roles are told apart; the rest are counted together.
pub const MAX_ROLES: usize = 20;
/// At most this many entries of a list are named in a message.
const MAX_NAMED: usize = 5;

/// One `AssumeRoleWithWebIdentity` call, as CloudTrail recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssumeEvent {
    /// When (Unix seconds), when recorded.
    pub time: Option<i64>,
    /// The token's subject, e.g. `system:serviceaccount:reports:s3-reader`.
    pub subject: Option<String>,
    /// The identity provider the token came from (its ARN or issuer host), when recorded.
    pub provider: Option<String>,
    /// The role requested.
    pub role_arn: Option<String>,
    /// STS's error code; `None`: the call succeeded.
    pub error_code: Option<String>,
}

/// Why a CloudTrail record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CloudTrailEvent is not a JSON object: {0}")]
pub struct EventError(String);

impl AssumeEvent {
    /// Reads the `CloudTrailEvent` JSON of a LookupEvents record. The subject is the web
    /// identity user's name, else the subject STS echoed, else the tail of the principal ID;
    /// failed calls carry no response, so the first is the one they have.
    pub fn from_cloudtrail(json: &str) -> Result<AssumeEvent, EventError> {
        let v: Value = serde_json::from_str(json).map_err(|e| EventError(e.to_string()))?;
        if !v.is_object() {
            return Err(EventError("not an object".into()));
        }
        let text = |path: &[&str]| -> Option<String> {
            let mut at = &v;
            for key in path {
                at = at.get(key)?;
            }
            at.as_str().filter(|s| !s.is_empty()).map(str::to_string)
        };
        let subject = text(&["userIdentity", "userName"])
            .or_else(|| text(&["responseElements", "subjectFromWebIdentityToken"]))
            .or_else(|| {
                let principal = text(&["userIdentity", "principalId"])?;
                let at = principal.find("system:serviceaccount:")?;
                Some(principal[at..].to_string())
            });
        Ok(AssumeEvent {
            time: text(&["eventTime"]).as_deref().and_then(parse_timestamp),
            subject,
            provider: text(&["userIdentity", "identityProvider"])
                .or_else(|| text(&["responseElements", "provider"])),
            role_arn: text(&["requestParameters", "roleArn"]),
            error_code: text(&["errorCode"]),
        })
    }

    /// Whether the token came from `issuer`'s provider; an event that names none may have.
    /// CloudTrail names it as the provider's ARN (`arn:aws:iam::<account>:oidc-provider/<host
    /// and path>`) or as its host and path (with or without `https://`): either must be exactly
    /// the issuer's, not merely contain it (`…/id/ABC` is not `…/id/ABCD`).
    fn came_from(&self, issuer: Option<&Issuer>) -> bool {
        match (issuer, &self.provider) {
            (Some(issuer), Some(provider)) => {
                let named = match provider.split_once(":oidc-provider/") {
                    Some((_, host_path)) => host_path,
                    None => provider.strip_prefix("https://").unwrap_or(provider),
                };
                named
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(issuer.host_path())
            }
            _ => true,
        }
    }
}

/// The `AssumeRoleWithWebIdentity` events of one account and region over a time window, newest
/// first, as far as they were read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventLog {
    /// The window's start (Unix seconds).
    pub since: i64,
    /// Its end: when the events were read.
    pub until: i64,
    /// The events read.
    pub events: Vec<AssumeEvent>,
    /// Whether every event of the window was read; `false`: only the newest, up to the bound.
    pub complete: bool,
    /// Records whose JSON could not be read (left out).
    pub unreadable: usize,
}

impl EventLog {
    /// The start of the period the events read cover: the window's, or when only the newest
    /// were read, the oldest of those.
    pub fn covered_since(&self) -> i64 {
        if self.complete {
            return self.since;
        }
        self.events
            .iter()
            .filter_map(|e| e.time)
            .min()
            .unwrap_or(self.until)
            .max(self.since)
    }
}

/// The calls for one requested role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleAttempts {
    /// Successful calls.
    pub successes: u64,
    /// The last successful call.
    pub last_success: Option<i64>,
    /// Failed calls by error code.
    pub failures: BTreeMap<String, u64>,
    /// Failed calls after the last success (all, without one), by error code: still failing.
    pub ongoing: BTreeMap<String, u64>,
    /// The last failed call.
    pub last_failure: Option<i64>,
}

/// What CloudTrail says about one ServiceAccount's web identity calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeHistory {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// The role the ServiceAccount names.
    pub annotated_role: String,
    /// The period the events read cover (Unix seconds)...
    pub since: i64,
    /// ...up to when they were read.
    pub until: i64,
    /// Whether every event of the window was read.
    pub complete: bool,
    /// Calls by requested role (at most [`MAX_ROLES`]; more are counted under `other roles`).
    pub roles: BTreeMap<String, RoleAttempts>,
    /// Running pods of the ServiceAccount.
    pub running_pods: usize,
    /// When the oldest of them started (Unix seconds), when known.
    pub oldest_pod_start: Option<i64>,
}

/// The subject of a ServiceAccount's tokens.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

impl AssumeHistory {
    /// The calls of `subject` (tokens of `issuer`'s provider, when known) in `log`, for a
    /// ServiceAccount naming `annotated_role` whose running pods started at `pod_starts`.
    pub fn summarise(
        log: &EventLog,
        subject: &str,
        issuer: Option<&Issuer>,
        annotated_role: &str,
        pod_starts: &[Option<i64>],
    ) -> AssumeHistory {
        let mine: Vec<&AssumeEvent> = log
            .events
            .iter()
            .filter(|e| e.subject.as_deref() == Some(subject) && e.came_from(issuer))
            .collect();
        let mut roles: BTreeMap<String, RoleAttempts> = BTreeMap::new();
        for e in &mine {
            let mut role = e.role_arn.clone().unwrap_or_else(|| "(no role)".into());
            if !roles.contains_key(&role) && roles.len() >= MAX_ROLES {
                role = "(other roles)".into();
            }
            let r = roles.entry(role).or_default();
            match &e.error_code {
                None => {
                    r.successes += 1;
                    r.last_success = r.last_success.max(e.time);
                }
                Some(code) => {
                    *r.failures.entry(code.clone()).or_default() += 1;
                    r.last_failure = r.last_failure.max(e.time);
                }
            }
        }
        // A failure is ongoing unless a later call for the same role succeeded.
        for e in &mine {
            let Some(code) = &e.error_code else { continue };
            let role = e.role_arn.as_deref().unwrap_or("(no role)");
            let r = match roles.get_mut(role) {
                Some(r) => r,
                None => roles.get_mut("(other roles)").expect("counted above"),
            };
            let recovered = matches!((e.time, r.last_success), (Some(t), Some(s)) if s > t);
            if !recovered {
                *r.ongoing.entry(code.clone()).or_default() += 1;
            }
        }
        AssumeHistory {
            subject: subject.to_string(),
            annotated_role: annotated_role.to_string(),
            since: log.covered_since(),
            until: log.until,
            complete: log.complete,
            roles,
            running_pods: pod_starts.len(),
            oldest_pod_start: pod_starts.iter().flatten().min().copied(),
        }
    }

    /// Successful calls, whatever the role.
    pub fn successes(&self) -> u64 {
        self.roles.values().map(|r| r.successes).sum()
    }

    /// What the history says: failing pods, or running pods that never call with their web
    /// identity although the role trusts them (`trusted`: the trust check or the probe passed).
    pub fn findings(&self, trusted: bool) -> Vec<WorkloadFinding> {
        let mut findings = Vec::new();
        let failing: Vec<String> = self
            .roles
            .iter()
            .filter(|(_, r)| !r.ongoing.is_empty())
            .map(|(role, r)| self.describe_failures(role, r))
            .collect();
        if !failing.is_empty() {
            findings.push(WorkloadFinding {
                reason: Reason::WorkloadAssumeFailures,
                message: format!(
                    "CloudTrail shows pods of {} failing AssumeRoleWithWebIdentity {}: {}",
                    self.subject,
                    self.period(),
                    failing.join("; ")
                ),
            });
        }
        let quiet_for = self.until - QUIET_SECONDS;
        let long_running = self.oldest_pod_start.is_some_and(|s| s <= quiet_for);
        if trusted
            && self.roles.is_empty()
            && self.running_pods > 0
            && long_running
            && self.since <= quiet_for
        {
            findings.push(WorkloadFinding {
                reason: Reason::WorkloadsNotUsingWebIdentity,
                message: format!(
                    "{} running pod(s) of {} started more than {} minutes ago, yet CloudTrail recorded \
                     no AssumeRoleWithWebIdentity call with its token {}: if they call AWS, they do it \
                     with other credentials (static keys, the node's instance role, or an SDK too old \
                     for web identity)",
                    self.running_pods,
                    self.subject,
                    QUIET_SECONDS / 60,
                    self.period()
                ),
            });
        }
        findings
    }

    /// One sentence for the condition when nothing is wrong.
    pub fn summary(&self) -> String {
        let successes = self.successes();
        let mut text = format!(
            "CloudTrail shows {successes} successful AssumeRoleWithWebIdentity call(s) by {} {}",
            self.subject,
            self.period()
        );
        let others: Vec<&String> = self
            .roles
            .iter()
            .filter(|(role, r)| **role != self.annotated_role && r.successes > 0)
            .map(|(role, _)| role)
            .collect();
        if !others.is_empty() {
            text.push_str(&format!(
                ", also for role(s) other than the annotated one: {}",
                named(others.iter().map(|s| s.as_str()))
            ));
        }
        let recovered: u64 = self
            .roles
            .values()
            .map(|r| r.failures.values().sum::<u64>() - r.ongoing.values().sum::<u64>())
            .sum();
        if recovered > 0 {
            text.push_str(&format!(
                "; {recovered} earlier failed call(s) were followed by successful ones"
            ));
        }
        text
    }

    fn describe_failures(&self, role: &str, r: &RoleAttempts) -> String {
        let codes: Vec<String> = r
            .ongoing
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        let which = if role == self.annotated_role {
            format!("role {role}")
        } else {
            format!("role {role} (not the annotated {})", self.annotated_role)
        };
        let last = r
            .last_failure
            .map(|t| format!(", the last at {}", format_timestamp(t)))
            .unwrap_or_default();
        let success = match r.last_success {
            Some(t) => format!(
                "; {} call(s) succeeded, the last at {}",
                r.successes,
                format_timestamp(t)
            ),
            None => "; none succeeded".to_string(),
        };
        format!("{which}: {}{last}{success}", codes.join(", "))
    }

    fn period(&self) -> String {
        let hours = (self.until - self.since).max(0) as f64 / 3600.0;
        let span = if hours >= 1.0 {
            format!("{hours:.0}h")
        } else {
            format!("{}m", (self.until - self.since).max(0) / 60)
        };
        if self.complete {
            format!("in the last {span}")
        } else {
            format!("in the last {span} (only the newest events were read)")
        }
    }
}

/// The first few names, and how many more there are.
pub(crate) fn named<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    let shown = all
        .iter()
        .take(MAX_NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match all.len().saturating_sub(MAX_NAMED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// `2024-05-01T12:00:00Z` for Unix seconds (Howard Hinnant's civil-from-days).
pub fn format_timestamp(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "system:serviceaccount:reports:s3-reader";
    const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
    const HOST: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    const NOW: i64 = 1_714_564_800; // 2024-05-01T12:00:00Z

    /// A record shaped as CloudTrail writes one, success or failure.
    fn record(time: i64, subject: &str, role: &str, error: Option<&str>) -> String {
        let identity = serde_json::json!({
            "type": "WebIdentityUser",
            "principalId": format!("arn:aws:iam::111122223333:oidc-provider/{HOST}:sts.amazonaws.com:{subject}"),
            "userName": subject,
            "identityProvider": format!("arn:aws:iam::111122223333:oidc-provider/{HOST}"),
        });
        let mut v = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": format_timestamp(time),
            "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRoleWithWebIdentity",
            "requestParameters": {"roleArn": role, "roleSessionName": "botocore-session-1"},
            "responseElements": null,
        });
        match error {
            Some(code) => {
                v["errorCode"] = code.into();
                v["errorMessage"] =
                    "Not authorized to perform sts:AssumeRoleWithWebIdentity".into();
            }
            None => {
                v["responseElements"] = serde_json::json!({
                    "subjectFromWebIdentityToken": subject,
                    "provider": format!("arn:aws:iam::111122223333:oidc-provider/{HOST}"),
                });
            }
        }
        v.to_string()
    }

    fn log(records: &[String]) -> EventLog {
        EventLog {
            since: NOW - 12 * 3600,
            until: NOW,
            events: records
                .iter()
                .map(|r| AssumeEvent::from_cloudtrail(r).unwrap())
                .collect(),
            complete: true,
            unreadable: 0,
        }
    }

    fn issuer() -> Issuer {
        Issuer::parse(&format!("https://{HOST}")).unwrap()
    }

    #[test]
    fn the_provider_must_be_exactly_the_issuer() {
        let with = |provider: &str| AssumeEvent {
            time: Some(NOW),
            subject: Some(SUBJECT.into()),
            provider: Some(provider.into()),
            role_arn: Some(ROLE.into()),
            error_code: None,
        };
        let issuer = issuer();
        for same in [
            format!("arn:aws:iam::111122223333:oidc-provider/{HOST}"),
            HOST.to_string(),
            format!("https://{HOST}"),
            format!("https://{HOST}/"),
        ] {
            assert!(with(&same).came_from(Some(&issuer)), "{same}");
        }
        // Another cluster whose id merely starts (or ends) like this one's.
        for other in [
            format!("arn:aws:iam::111122223333:oidc-provider/{HOST}0"),
            format!("{HOST}0"),
            format!("x{HOST}"),
            format!("arn:aws:iam::111122223333:oidc-provider/evil.example/{HOST}"),
        ] {
            assert!(!with(&other).came_from(Some(&issuer)), "{other}");
        }
    }

    #[test]
    fn reads_successes_and_failures_from_the_record() {
        let ok = AssumeEvent::from_cloudtrail(&record(NOW, SUBJECT, ROLE, None)).unwrap();
        assert_eq!(ok.subject.as_deref(), Some(SUBJECT));
        assert_eq!(ok.role_arn.as_deref(), Some(ROLE));
        assert_eq!(ok.error_code, None);
        assert_eq!(ok.time, Some(NOW));
        assert!(ok.provider.unwrap().ends_with(HOST));
        // A failure without userName: the subject comes from the principal ID.
        let mut v: Value =
            serde_json::from_str(&record(NOW, SUBJECT, ROLE, Some("AccessDenied"))).unwrap();
        v["userIdentity"]
            .as_object_mut()
            .unwrap()
            .remove("userName");
        let failed = AssumeEvent::from_cloudtrail(&v.to_string()).unwrap();
        assert_eq!(failed.subject.as_deref(), Some(SUBJECT));
        assert_eq!(failed.error_code.as_deref(), Some("AccessDenied"));
        let e = AssumeEvent::from_cloudtrail("[1]").unwrap_err();
        assert!(e.to_string().contains("CloudTrailEvent"), "{e}");
        assert!(AssumeEvent::from_cloudtrail("{").is_err());
    }

    #[test]
    fn ongoing_failures_are_reported_with_code_and_count_and_other_subjects_ignored() {
        let other_role = "arn:aws:iam::111122223333:role/admin";
        let records = [
            record(NOW - 600, SUBJECT, ROLE, Some("AccessDenied")),
            record(NOW - 1200, SUBJECT, ROLE, Some("AccessDenied")),
            record(NOW - 1800, SUBJECT, ROLE, Some("InvalidIdentityToken")),
            // Before the last success: recovered, not ongoing.
            record(NOW - 7000, SUBJECT, ROLE, Some("AccessDenied")),
            record(NOW - 3600, SUBJECT, ROLE, None),
            record(NOW - 900, SUBJECT, other_role, Some("AccessDenied")),
            // Someone else's calls are not this ServiceAccount's business.
            record(
                NOW - 60,
                "system:serviceaccount:other:x",
                ROLE,
                Some("AccessDenied"),
            ),
        ];
        let h = AssumeHistory::summarise(&log(&records), SUBJECT, Some(&issuer()), ROLE, &[]);
        assert_eq!(h.successes(), 1);
        let mine = &h.roles[ROLE];
        assert_eq!(mine.failures["AccessDenied"], 3);
        assert_eq!(mine.ongoing["AccessDenied"], 2);
        assert_eq!(mine.ongoing["InvalidIdentityToken"], 1);
        let f = h.findings(true);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].reason, Reason::WorkloadAssumeFailures);
        let m = &f[0].message;
        assert!(
            m.contains("AccessDenied x2, InvalidIdentityToken x1"),
            "{m}"
        );
        assert!(m.contains("the last at 2024-05-01T11:50:00Z"), "{m}");
        assert!(m.contains("1 call(s) succeeded"), "{m}");
        assert!(m.contains("role/admin (not the annotated"), "{m}");
        assert!(!m.contains("other:x"), "{m}");
    }

    #[test]
    fn another_clusters_tokens_with_the_same_subject_are_not_counted() {
        let mut v: Value =
            serde_json::from_str(&record(NOW - 60, SUBJECT, ROLE, Some("AccessDenied"))).unwrap();
        v["userIdentity"]["identityProvider"] =
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/OTHER"
                .into();
        let h =
            AssumeHistory::summarise(&log(&[v.to_string()]), SUBJECT, Some(&issuer()), ROLE, &[]);
        assert!(h.roles.is_empty());
        // Without a known issuer it counts.
        let h = AssumeHistory::summarise(&log(&[v.to_string()]), SUBJECT, None, ROLE, &[]);
        assert_eq!(h.roles[ROLE].failures["AccessDenied"], 1);
    }

    #[test]
    fn long_running_pods_without_any_call_are_warned_about_only_when_it_can_be_told() {
        let old_pod = [Some(NOW - 5 * 3600)];
        let quiet = AssumeHistory::summarise(&log(&[]), SUBJECT, None, ROLE, &old_pod);
        let f = quiet.findings(true);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].reason, Reason::WorkloadsNotUsingWebIdentity);
        assert!(
            f[0].message.contains("1 running pod(s)"),
            "{}",
            f[0].message
        );
        // The role does not trust the ServiceAccount: that is said elsewhere.
        assert!(quiet.findings(false).is_empty());
        // A young pod may simply not have called yet.
        let young = AssumeHistory::summarise(&log(&[]), SUBJECT, None, ROLE, &[Some(NOW - 600)]);
        assert!(young.findings(true).is_empty());
        // No pods: nothing to say.
        assert!(
            AssumeHistory::summarise(&log(&[]), SUBJECT, None, ROLE, &[])
                .findings(true)
                .is_empty()
        );
        // Only the newest 10 minutes were read (busy account): too short to tell.
        let mut busy = log(&[record(NOW - 600, "system:serviceaccount:a:b", ROLE, None)]);
        busy.complete = false;
        let h = AssumeHistory::summarise(&busy, SUBJECT, None, ROLE, &old_pod);
        assert_eq!(h.since, NOW - 600);
        assert!(h.findings(true).is_empty());
        // A success: the pods use their web identity.
        let used = AssumeHistory::summarise(
            &log(&[record(NOW - 600, SUBJECT, ROLE, None)]),
            SUBJECT,
            None,
            ROLE,
            &old_pod,
        );
        assert!(used.findings(true).is_empty());
        assert!(used.summary().starts_with("CloudTrail shows 1 successful"));
    }

    #[test]
    fn timestamps_round_trip() {
        for t in [0, NOW, 951_782_400 /* 2000-02-29 */, 4_102_444_799] {
            assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t));
        }
        assert_eq!(format_timestamp(NOW), "2024-05-01T12:00:00Z");
    }
}
