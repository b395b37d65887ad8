//! Readiness and liveness probes, polled as a kubelet polls them: `httpGet` (a status from 200 to
//! 399 passes), `tcpSocket` (a connection passes) and `exec` (exit 0 passes, run as a local
//! process), after `initialDelaySeconds`, every `periodSeconds`, each attempt within
//! `timeoutSeconds`, flipping after `successThreshold` or `failureThreshold` in a row.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What a probe asks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Http {
        host: String,
        port: u16,
        path: String,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
}

/// One probe of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Probe {
    check: Check,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

/// A port given as a number, or by the name of one of the container's ports.
fn port(value: &Value, container: &Value) -> Option<u16> {
    if let Some(n) = value.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = value.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

impl Probe {
    /// The probe `key` (`readinessProbe`, `livenessProbe`) of `container`, addressed at
    /// `pod_ip` unless it names a host; `None` when it has none (or one of a kind not handled).
    pub(super) fn of(container: &Value, key: &str, pod_ip: &str) -> Option<Probe> {
        let probe = &container[key];
        if !probe.is_object() {
            return None;
        }
        let host = |handler: &Value| {
            handler["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .unwrap_or(pod_ip)
                .to_string()
        };
        let check = if probe["httpGet"].is_object() {
            let h = &probe["httpGet"];
            Check::Http {
                host: host(h),
                port: port(&h["port"], container)?,
                path: h["path"].as_str().unwrap_or("/").to_string(),
            }
        } else if probe["tcpSocket"].is_object() {
            let t = &probe["tcpSocket"];
            Check::Tcp {
                host: host(t),
                port: port(&t["port"], container)?,
            }
        } else {
            Check::Exec {
                command: probe["exec"]["command"]
                    .as_array()?
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect(),
            }
        };
        let seconds =
            |key: &str, default: u64| Duration::from_secs(probe[key].as_u64().unwrap_or(default));
        let count = |key: &str, default: u64| {
            u32::try_from(probe[key].as_u64().unwrap_or(default).max(1)).unwrap_or(1)
        };
        Some(Probe {
            check,
            initial_delay: seconds("initialDelaySeconds", 0),
            period: seconds("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: seconds("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: count("successThreshold", 1),
            failure_threshold: count("failureThreshold", 3),
        })
    }

    /// One attempt.
    async fn passes(&self) -> bool {
        let attempt = async {
            match &self.check {
                Check::Http { host, port, path } => http_get(host, *port, path).await,
                Check::Tcp { host, port } => {
                    TcpStream::connect((host.as_str(), *port)).await.is_ok()
                }
                Check::Exec { command } => {
                    let Some((program, args)) = command.split_first() else {
                        return false;
                    };
                    tokio::process::Command::new(program)
                        .args(args)
                        .kill_on_drop(true)
                        .status()
                        .await
                        .is_ok_and(|s| s.success())
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(false)
    }

    /// Polls forever, calling `changed` with the verdict each time it flips (it starts failing).
    pub(super) async fn watch(&self, mut changed: impl FnMut(bool)) {
        tokio::time::sleep(self.initial_delay).await;
        let (mut ok, mut successes, mut failures) = (false, 0, 0);
        loop {
            if self.passes().await {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
            }
            if !ok && successes >= self.success_threshold {
                ok = true;
                changed(true);
            } else if ok && failures >= self.failure_threshold {
                ok = false;
                changed(false);
            }
            tokio::time::sleep(self.period).await;
        }
    }

    /// Completes once the probe has failed `failureThreshold` times in a row.
    pub(super) async fn failed(&self) {
        tokio::time::sleep(self.initial_delay).await;
        let mut failures = 0;
        loop {
            if self.passes().await {
                failures = 0;
            } else {
                failures += 1;
                if failures >= self.failure_threshold {
                    return;
                }
            }
            tokio::time::sleep(self.period).await;
        }
    }
}

/// `GET path` over HTTP/1.1; whether the status is from 200 to 399.
async fn http_get(host: &str, port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect((host, port)).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.36\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let status = String::from_utf8_lossy(&head[..read]);
    status
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn probes_address_the_pod_and_resolve_named_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.9:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).await.unwrap();
                let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /readyz");
                let status = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let container = json!({"ports": [{"name": "metrics", "containerPort": port}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 1},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "failureThreshold": 2,
                              "periodSeconds": 1}});
        let ready = Probe::of(&container, "readinessProbe", "127.0.0.9").unwrap();
        assert!(ready.passes().await);
        // Another pod's address answers nothing.
        assert!(
            !Probe::of(&container, "readinessProbe", "127.0.0.10")
                .unwrap()
                .passes()
                .await
        );
        let live = Probe::of(&container, "livenessProbe", "127.0.0.9").unwrap();
        assert!(!live.passes().await);
        tokio::time::timeout(Duration::from_secs(10), live.failed())
            .await
            .expect("two failures in a row");
        assert_eq!(Probe::of(&json!({}), "readinessProbe", "127.0.0.9"), None);
    }
}
