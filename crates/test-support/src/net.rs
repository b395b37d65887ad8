//! Loopback networking for tests: free ports, plain HTTP GETs, and a proxy that can be closed.

use std::net::TcpListener;

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// [`http_get`] off the async runtime: a blocking socket must not stall the runtime that may
/// also serve an in-process API server.
pub async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&addr, &path))
        .await
        .ok()?
}

/// A plain HTTP GET on loopback: status code and body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// A TCP proxy on a loopback port to `127.0.0.1:upstream` that a test closes — new connections
/// are refused and open ones cut, as when a service goes away — and opens again on the same
/// port. Stops on drop.
pub struct Gate {
    /// The proxy's port.
    pub port: u16,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gate {
    /// Starts the proxy, open.
    pub async fn start(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, mut opened) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(accepting) = listener.take() else {
                    // Closed: wait to be opened, then listen on the same port again.
                    if opened.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                        .await
                        .ok();
                    continue;
                };
                // Connections live in this set: closing the gate drops it, cutting them.
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = accepting.accept() => {
                            let Ok((mut client, _)) = accepted else { break };
                            connections.spawn(async move {
                                if let Ok(mut server) =
                                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                                {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                                }
                            });
                        }
                        closed = opened.wait_for(|o| !*o) => {
                            if closed.is_err() {
                                return;
                            }
                            break;
                        }
                    }
                }
            }
        });
        Gate { port, open, task }
    }

    /// Refuses new connections and cuts open ones.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Accepts connections again.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}
