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

/// What a [`Gate`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards them.
    Open,
    /// Refuses new ones and cuts open ones, as when a service goes away.
    Closed,
    /// Accepts them and answers nothing until opened again, as behind a network black hole:
    /// what was sent is then delivered, as TCP retransmission would.
    Hung,
}

/// A TCP proxy on a loopback port to `127.0.0.1:upstream` that a test closes (refusing) or
/// hangs (silent), and opens again on the same port. Stops on drop.
pub struct Gate {
    /// The proxy's port.
    pub port: u16,
    mode: tokio::sync::watch::Sender<Mode>,
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
        let (mode, mut modes) = tokio::sync::watch::channel(Mode::Open);
        let per_connection = modes.clone();
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(accepting) = listener.take() else {
                    // Closed: wait to be opened (or hung), then listen on the same port again.
                    if modes.wait_for(|m| *m != Mode::Closed).await.is_err() {
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
                            let mut mode = per_connection.clone();
                            connections.spawn(async move {
                                // A hung gate holds the connection until it opens.
                                if mode.wait_for(|m| *m == Mode::Open).await.is_err() {
                                    return;
                                }
                                if let Ok(mut server) =
                                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                                {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                                }
                            });
                        }
                        closed = modes.wait_for(|m| *m == Mode::Closed) => {
                            if closed.is_err() {
                                return;
                            }
                            break;
                        }
                    }
                }
            }
        });
        Gate { port, mode, task }
    }

    /// Refuses new connections and cuts open ones.
    pub fn close(&self) {
        self.mode.send_replace(Mode::Closed);
    }

    /// Accepts connections and answers nothing on them until [`Gate::open`].
    pub fn hang(&self) {
        self.mode.send_replace(Mode::Hung);
    }

    /// Forwards connections again, those held while hung included.
    pub fn open(&self) {
        self.mode.send_replace(Mode::Open);
    }
}
