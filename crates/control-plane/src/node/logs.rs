//! Every container's output as a kubelet keeps and serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tokio::sync::watch;

use super::Agent;

/// Every container's output, by (namespace, pod, container).
#[derive(Default)]
pub(super) struct Logs(Mutex<HashMap<(String, String, String), Arc<ContainerLog>>>);

impl Logs {
    /// A fresh log for a container that is about to run.
    pub(super) fn open(
        &self,
        ns: &str,
        pod: &str,
        uid: &str,
        container: &str,
    ) -> Arc<ContainerLog> {
        let log = Arc::new(ContainerLog {
            uid: uid.to_string(),
            lines: watch::Sender::new(LogLines {
                lines: Vec::new(),
                partial: [Vec::new(), Vec::new()],
                waiting: Some("ContainerCreating".into()),
                done: false,
            }),
        });
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.into(), pod.into(), container.into()), log.clone());
        log
    }

    pub(super) fn get(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<ContainerLog>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.into(), pod.into(), container.into()))
            .cloned()
    }

    /// Forgets the pod's logs, unless a new pod of that name has taken them over.
    pub(super) fn remove_pod(&self, ns: &str, pod: &str, uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, p, _), log| !(n == ns && p == pod && log.uid == uid));
    }
}

pub(super) struct ContainerLog {
    uid: String,
    lines: watch::Sender<LogLines>,
}

struct LogLines {
    lines: Vec<LogLine>,
    /// An unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    /// Why the container has not started, while it has not.
    waiting: Option<String>,
    /// The container has exited: no more lines.
    done: bool,
}

struct LogLine {
    time: jiff::Timestamp,
    stderr: bool,
    text: String,
}

impl ContainerLog {
    pub(super) fn waiting(&self, reason: &str) {
        self.lines.send_modify(|l| l.waiting = Some(reason.into()));
    }

    pub(super) fn started(&self) {
        self.lines.send_modify(|l| l.waiting = None);
    }

    /// Adds output; each complete line is stamped with the time it arrived.
    pub(super) fn append(&self, stderr: bool, bytes: &[u8]) {
        self.lines.send_modify(|l| {
            let partial = &mut l.partial[usize::from(stderr)];
            partial.extend_from_slice(bytes);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                l.lines.push(LogLine {
                    time: jiff::Timestamp::now(),
                    stderr,
                    text: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        });
    }

    /// The container starts again after a restart: its log goes on.
    pub(super) fn restarted(&self) {
        self.lines.send_modify(|l| {
            l.waiting = None;
            l.done = false;
        });
    }

    /// The container exited: unfinished lines are complete as they are.
    pub(super) fn finish(&self) {
        self.lines.send_modify(|l| {
            for stderr in [false, true] {
                let rest = std::mem::take(&mut l.partial[usize::from(stderr)]);
                if !rest.is_empty() {
                    l.lines.push(LogLine {
                        time: jiff::Timestamp::now(),
                        stderr,
                        text: String::from_utf8_lossy(&rest).into_owned(),
                    });
                }
            }
            l.done = true;
        });
    }
}

/// The query the API server passes on from `pods/log`.
struct LogQuery {
    follow: bool,
    timestamps: bool,
    tail: Option<usize>,
    limit: Option<usize>,
    since: Option<jiff::Timestamp>,
    /// `Some(true)`: stderr only, `Some(false)`: stdout only.
    stderr: Option<bool>,
}

impl LogQuery {
    fn parse(q: &HashMap<String, String>) -> Result<LogQuery, String> {
        let number = |key: &str| -> Result<Option<i64>, String> {
            q.get(key)
                .map(|v| v.parse::<i64>().map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        let since = match (number("sinceSeconds")?, q.get("sinceTime")) {
            (Some(s), _) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(s))
                    .map_err(|e| e.to_string())?,
            ),
            (None, Some(t)) => Some(t.parse().map_err(|e| format!("sinceTime: {e}"))?),
            (None, None) => None,
        };
        Ok(LogQuery {
            follow: q.get("follow").is_some_and(|v| v == "true"),
            timestamps: q.get("timestamps").is_some_and(|v| v == "true"),
            tail: number("tailLines")?.map(|n| n.max(0) as usize),
            limit: number("limitBytes")?.map(|n| n.max(0) as usize),
            since,
            stderr: match q.get("stream").map(String::as_str) {
                Some("Stdout") => Some(false),
                Some("Stderr") => Some(true),
                _ => None,
            },
        })
    }

    fn selects(&self, line: &LogLine) -> bool {
        self.stderr.is_none_or(|s| s == line.stderr) && self.since.is_none_or(|t| line.time >= t)
    }

    fn format(&self, line: &LogLine) -> String {
        if self.timestamps {
            format!("{} {}", line.time, line.text)
        } else {
            line.text.clone()
        }
    }
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`, as a kubelet serves it.
pub(super) async fn container_logs(
    State(agent): State<Arc<Agent>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(log) = agent.logs.get(&ns, &pod, &container) else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?} is not on this node"),
        )
            .into_response();
    };
    if query.get("previous").is_some_and(|v| v == "true") {
        return (
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found"),
        )
            .into_response();
    }
    let query = match LogQuery::parse(&query) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let mut receiver = log.lines.subscribe();
    let (first, next) = {
        let lines = receiver.borrow_and_update();
        if let Some(reason) = &lines.waiting {
            let reason = if reason.contains("ImagePull") {
                "trying and failing to pull image"
            } else {
                reason
            };
            return (
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {pod:?} is waiting to start: {reason}"),
            )
                .into_response();
        }
        let selected: Vec<&LogLine> = lines.lines.iter().filter(|l| query.selects(l)).collect();
        let skip = query.tail.map_or(0, |n| selected.len().saturating_sub(n));
        let text: String = selected[skip..].iter().map(|l| query.format(l)).collect();
        (text, lines.lines.len())
    };
    let remaining = query.limit.unwrap_or(usize::MAX);
    let (first, remaining) = truncate(first, remaining);
    let content_type = [(header::CONTENT_TYPE, "text/plain")];
    if !query.follow {
        return (content_type, first).into_response();
    }
    let later = futures::stream::unfold(
        (receiver, next, remaining, query),
        |(mut receiver, mut next, mut remaining, query)| async move {
            loop {
                if remaining == 0 {
                    return None;
                }
                let (text, done) = {
                    let lines = receiver.borrow_and_update();
                    let text: String = lines.lines[next..]
                        .iter()
                        .filter(|l| query.selects(l))
                        .map(|l| query.format(l))
                        .collect();
                    next = lines.lines.len();
                    (text, lines.done)
                };
                if !text.is_empty() {
                    let (text, left) = truncate(text, remaining);
                    remaining = left;
                    return Some((Bytes::from(text), (receiver, next, remaining, query)));
                }
                // Done, or the pod was deleted and its log dropped.
                if done || receiver.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    let body = futures::stream::once(async move { Bytes::from(first) })
        .chain(later)
        .filter(|b| std::future::ready(!b.is_empty()))
        .map(Ok::<_, std::convert::Infallible>);
    (content_type, Body::from_stream(body)).into_response()
}

/// At most `limit` bytes of `text`, and what is left of the limit.
fn truncate(mut text: String, limit: usize) -> (String, usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        return (text, 0);
    }
    let left = limit - text.len();
    (text, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), ("h".to_string(), 0));
        assert_eq!(truncate("abc".into(), 5), ("abc".to_string(), 2));
    }
}
