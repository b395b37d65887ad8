//! SIGTERM and SIGINT: the first asks for a graceful stop; the runtime treats a second one,
//! during the shutdown, as "abort now".

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Exit status after a second signal (as a shell reports an interrupted process).
pub const ABORTED: u8 = 130;

/// The process's termination signals.
pub struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Signals {
    /// Starts listening (before anything else, so no signal is missed).
    pub fn listen() -> Signals {
        let term = signal(SignalKind::terminate())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
            .ok();
        let int = signal(SignalKind::interrupt())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGINT"))
            .ok();
        Signals { term, int }
    }

    /// Resolves at the next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {},
            _ = recv(&mut self.int) => {},
        }
    }
}
