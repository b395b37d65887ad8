//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use super::error::Error;
use super::metrics::Metrics;

/// How often the API server is asked whether it answers (`GET /version`).
const API_PROBE_PERIOD: Duration = Duration::from_secs(5);
/// Not ready once the API server has not answered for this long (three probes).
const API_SILENCE: Duration = Duration::from_secs(15);
/// Connections served at once; one more is closed at once. Prometheus and the kubelet need a
/// handful.
const MAX_CONNECTIONS: usize = 32;
/// A client must have sent its request's headers within this, or the connection is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this, whatever it is doing (keep-alive included).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Readiness. On the leader: every watch has listed and the issuer is known. On a standby: it
/// could take over. On both: the API server answered within [`API_SILENCE`] — a leader that
/// cannot reach it diagnoses nothing, and a standby that cannot reach it cannot take over.
/// Liveness (`/healthz`) asks none of this, so an API outage never restarts the pod.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    api_answered: Mutex<Instant>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            ready: AtomicBool::new(false),
            api_answered: Mutex::new(Instant::now()),
        }
    }
}

impl Health {
    /// Marks the operator ready (or not) as far as its own state goes.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Records that the API server answered.
    fn api_answered(&self) {
        *self.api_answered.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Why the operator is not ready, if it is not, at `now`.
    fn not_ready(&self, now: Instant) -> Option<String> {
        let answered = *self.api_answered.lock().unwrap_or_else(|p| p.into_inner());
        let silent = now.saturating_duration_since(answered);
        if silent > API_SILENCE {
            return Some(format!(
                "not ready: the API server has not answered for {} s",
                silent.as_secs()
            ));
        }
        (!self.ready.load(Ordering::SeqCst))
            .then(|| "not ready: caches syncing or issuer unknown".to_string())
    }
}

/// Asks the API server for its version every [`API_PROBE_PERIOD`], recording each answer in
/// `health`; runs until dropped.
pub async fn probe_api(client: kube::Client, health: Arc<Health>) {
    loop {
        let answered = tokio::time::timeout(API_PROBE_PERIOD, client.apiserver_version()).await;
        if matches!(answered, Ok(Ok(_))) {
            health.api_answered();
        }
        tokio::time::sleep(API_PROBE_PERIOD).await;
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn metrics_text(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    match s.health.not_ready(Instant::now()) {
        None => (StatusCode::OK, "ok".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Binds the endpoints' address (at start-up, so a taken port fails fast).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })
}

/// Serves `/metrics`, `/healthz` and `/readyz` until dropped: at most [`MAX_CONNECTIONS`] at
/// once, each closed if its headers take longer than [`HEADER_TIMEOUT`] and after
/// [`CONNECTION_TIMEOUT`] in any case, so idle or slow clients cannot hold the endpoints.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|source| Error::Http {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Owned here: dropping the server drops its connections.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, a connection reset before accept: not fatal.
                tracing::warn!(%addr, error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "{MAX_CONNECTIONS} HTTP connections open; closing a new one");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_the_api_server_answers() {
        let health = Health::default();
        let start = Instant::now();
        assert!(health.not_ready(start).unwrap().contains("caches syncing"));
        health.set_ready(true);
        assert_eq!(health.not_ready(start), None);
        let later = start + API_SILENCE + Duration::from_secs(2);
        assert!(
            health
                .not_ready(later)
                .unwrap()
                .contains("has not answered"),
            "{:?}",
            health.not_ready(later)
        );
        health.api_answered();
        assert_eq!(health.not_ready(Instant::now()), None);
    }

    /// Whether a connection was closed by the server: a read gets end-of-file (or a reset).
    async fn closed(stream: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn idle_connections_are_bounded_and_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(super::super::metrics::tests::unconnected()),
            Arc::new(Health::default()),
        ));
        // Every slot taken by a client that never sends its headers.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // One more is closed at once, unanswered.
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            closed(&mut extra).await,
            "a connection beyond the limit was served"
        );
        // The idle ones are closed once the header timeout has passed, freeing the slots.
        tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(500)).await;
        for stream in &mut idle {
            assert!(
                closed(stream).await,
                "an idle connection outlived the header timeout"
            );
        }
        let mut served = tokio::net::TcpStream::connect(addr).await.unwrap();
        served
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        served.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }
}
