//! `cloudtrail:LookupEvents` for `AssumeRoleWithWebIdentity`: what pods really did. One account's
//! events over a window are read once (newest first, at most [`MAX_PAGES`] pages) and shared by
//! every ServiceAccount whose role lives there; each diagnosis keeps only its own subject's
//! ([`irsa_core::assume_history::AssumeHistory::summarise`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use irsa_core::assume_history::{AssumeEvent, EventLog, EVENT_NAME, MAX_WINDOW};
use irsa_core::{Reason, Unavailable};

use super::AwsFacts;
use crate::cache::FactCache;
use crate::limiter::Lane;

/// CloudTrail serves LookupEvents at most twice a second per account and region; every
/// look-up waits for this quota before it queues for the shared limiter.
const LOOKUPS_PER_SECOND: u32 = 2;
/// LookupEvents returns at most 50 events a page.
const PAGE_SIZE: i32 = 50;
/// At most this many pages (1,000 events) are read per account and window: a busy account's
/// older events are left unread, and the summary says so.
pub const MAX_PAGES: usize = 20;
/// Events read are reused this long: CloudTrail itself delivers events minutes late.
const TTL: Duration = Duration::from_secs(300);

/// CloudTrail's own rate limit and the event logs read, by (account, window in seconds).
pub(super) struct Lookups {
    rate: DefaultDirectRateLimiter,
    logs: FactCache<(String, u64), Result<Arc<EventLog>, Unavailable>>,
}

impl Lookups {
    pub(super) fn new(max_entries: u64) -> Lookups {
        let per_second = NonZeroU32::new(LOOKUPS_PER_SECOND).expect("not zero");
        Lookups {
            rate: RateLimiter::direct(Quota::per_second(per_second).allow_burst(NonZeroU32::MIN)),
            logs: FactCache::new(TTL, max_entries),
        }
    }
}

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

impl AwsFacts {
    /// The `AssumeRoleWithWebIdentity` events CloudTrail recorded in `account` (the account of
    /// the roles asked for; read with its configured credentials) over the last `window`, at
    /// most [`MAX_WINDOW`], in the SDK's region. Shared by every namespace, so asked in the
    /// operator's own [`Lane`].
    pub async fn assume_role_events(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<Arc<EventLog>, Unavailable> {
        let window = window.min(MAX_WINDOW);
        let clients = self.clients_for(account).await?;
        self.cloudtrail
            .logs
            .get_or_fetch(
                (account.to_string(), window.as_secs()),
                Result::is_ok,
                || async {
                    let until = unix_now();
                    let since = until - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
                    let by_name = LookupAttribute::builder()
                        .attribute_key(LookupAttributeKey::EventName)
                        .attribute_value(EVENT_NAME)
                        .build()
                        .map_err(|e| Unavailable {
                            reason: Reason::AwsApiUnavailable,
                            detail: format!("building the cloudtrail:LookupEvents request: {e}"),
                        })?;
                    let mut log = EventLog {
                        since,
                        until,
                        ..EventLog::default()
                    };
                    let mut token: Option<String> = None;
                    for _ in 0..MAX_PAGES {
                        let request = clients
                            .cloudtrail
                            .lookup_events()
                            .lookup_attributes(by_name.clone())
                            .start_time(DateTime::from_secs(since))
                            .end_time(DateTime::from_secs(until))
                            .max_results(PAGE_SIZE)
                            .set_next_token(token.take());
                        self.cloudtrail.rate.until_ready().await;
                        let out = self
                            .call(
                                &Lane::Operator,
                                "cloudtrail",
                                "LookupEvents",
                                request.send(),
                            )
                            .await
                            .map_err(|f| {
                                self.unavailable(
                                    &f,
                                    "cloudtrail:LookupEvents",
                                    &format!(
                                        "the AssumeRoleWithWebIdentity events of account {account}"
                                    ),
                                )
                            })?;
                        for event in out.events() {
                            match event.cloud_trail_event().map(AssumeEvent::from_cloudtrail) {
                                Some(Ok(e)) => log.events.push(e),
                                _ => log.unreadable += 1,
                            }
                        }
                        match out.next_token() {
                            Some(t) if !t.is_empty() => token = Some(t.to_string()),
                            _ => {
                                log.complete = true;
                                break;
                            }
                        }
                    }
                    Ok(Arc::new(log))
                },
            )
            .await
    }
}
