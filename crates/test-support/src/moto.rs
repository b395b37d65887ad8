//! A moto server of the test's own on a free loopback port, stopped on drop, and SDK
//! configuration pointed at it with static test credentials.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, ConfigLoader, Region};
use aws_credential_types::Credentials;

/// A running `moto_server`, killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Moto {
    /// Starts `moto_server` (from PATH; `make venv` installs it) and waits until it answers.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}); run `make venv` and put .venv/bin on PATH")
            });
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// SDK configuration for this server: loopback endpoint, static credentials, no IMDS.
    pub fn loader(&self) -> ConfigLoader {
        loader(&self.url)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config loader that can only reach `url`.
pub fn loader(url: &str) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "irsa-aws-tests",
        ))
}

/// A TCP proxy in front of moto that delays each request and caps the request rate, so the
/// sweep meets IAM-like latency and limits.
pub async fn slow_proxy(upstream: u16, latency: Duration, per_second: u64) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let gap = Duration::from_secs_f64(1.0 / per_second.max(1) as f64);
    let next_slot = Arc::new(tokio::sync::Mutex::new(tokio::time::Instant::now()));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let next_slot = next_slot.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut sr, mut sw) = server.into_split();
                let (mut cr, mut cw) = client.split();
                let upload = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // One request per write burst: wait for a rate slot, then the latency.
                        let slot = {
                            let mut next = next_slot.lock().await;
                            let slot = (*next).max(tokio::time::Instant::now());
                            *next = slot + gap;
                            slot
                        };
                        tokio::time::sleep_until(slot + latency).await;
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let download = tokio::io::copy(&mut sr, &mut cw);
                let _ = tokio::join!(upload, download);
            });
        }
    });
    port
}

/// An EC2 instance launched in moto through `admin` with these metadata options (`HttpTokens`
/// `optional` or `required`, and the PUT response hop limit); its ID.
pub async fn launch_instance(admin: &irsa_aws::Clients, tokens: &str, hops: i32) -> String {
    use aws_sdk_ec2::types::{HttpTokensState, InstanceMetadataOptionsRequest};
    let out = admin
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::from(tokens))
                .http_put_response_hop_limit(hops)
                .build(),
        )
        .send()
        .await
        .expect("moto launches the instance");
    out.instances()[0]
        .instance_id()
        .expect("a launched instance has an ID")
        .to_string()
}
