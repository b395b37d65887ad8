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

/// Serves `/metrics`, `/healthz` and `/readyz` until dropped.
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
    axum::serve(listener, app)
        .await
        .map_err(|source| Error::Http { addr, source })
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
}
