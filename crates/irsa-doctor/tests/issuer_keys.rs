//! The issuer's discovery document and JWKS over real HTTPS: a local server with a CA and
//! serving certificate generated on the spot, the real API server's keys from its
//! `/openid/v1/jwks`, thumbprints computed independently with `openssl` (as AWS's "Obtaining the
//! thumbprint for an OpenID Connect identity provider" does), and `irsa-doctor check` end to end
//! against the real control plane and moto.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use control_plane::pki::{Ca, ServingCert};
use control_plane::ControlPlane;
use irsa_aws::Clients;
use irsa_core::issuer_keys::{IssuerKeys, Published};
use irsa_core::{
    diagnose, ConditionType, Fact, Facts, Issuer, OidcProvider, OidcProviderArn, Reason,
    ServiceAccount, Status,
};
use irsa_doctor::gather::issuer_keys::{self, IssuerTrust};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;

/// Routes of the test issuer: path to (status, body).
type Routes = Arc<Mutex<HashMap<String, (u16, String)>>>;

/// An HTTPS server on localhost answering fixed routes, one request per connection, which it
/// keeps open until the client closes it.
struct TestIssuer {
    port: u16,
    routes: Routes,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    /// Serves `cert`'s leaf followed by `extra_chain_pem` (e.g. its CA), with the leaf's key.
    async fn start(cert: &ServingCert, extra_chain_pem: &str) -> TestIssuer {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let pem = format!("{}{extra_chain_pem}", cert.cert_pem);
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Routes = Arc::default();
        let served = routes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, routes) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = routes
                        .lock()
                        .unwrap()
                        .get(&path)
                        .cloned()
                        .unwrap_or((404, "not found".into()));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(body.as_bytes()).await;
                    // Keep-alive, as real servers: the client must end the connection itself.
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        TestIssuer { port, routes, task }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn route(&self, path: &str, status: u16, body: impl Into<String>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, body.into()));
    }

    /// A discovery document pointing at `/keys`, and `jwks` there.
    fn publish(&self, jwks: &Value) {
        let discovery = json!({"issuer": self.url(), "jwks_uri": format!("{}/keys", self.url())});
        self.route(
            "/.well-known/openid-configuration",
            200,
            discovery.to_string(),
        );
        self.route("/keys", 200, jwks.to_string());
    }
}

/// The SHA-1 fingerprint of a PEM certificate as `openssl x509 -fingerprint -sha1` prints it,
/// colons removed: the AWS procedure for a provider's thumbprint.
fn openssl_thumbprint(pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-fingerprint", "-sha1", "-noout", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// A JWKS like `cluster`'s whose only key is another one (the public issuer was not updated
/// after the API server's key was rotated).
fn rotated(cluster: &Value) -> Value {
    let mut old = cluster["keys"][0].clone();
    old["kid"] = json!("key-before-rotation");
    old["n"] = json!(old["n"].as_str().unwrap().chars().rev().collect::<String>());
    json!({"keys": [old]})
}

fn trust_file(ca: &Ca) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, ca.cert_pem()).unwrap();
    (dir, path)
}

/// The OIDCProviderValid verdict and findings for a ServiceAccount whose provider lists
/// `thumbprints`, with `keys` fetched for `issuer`.
fn oidc_verdict(
    issuer: &str,
    keys: &IssuerKeys,
    thumbprints: &[&str],
) -> (Status, Vec<Reason>, String) {
    let issuer = Issuer::parse(issuer).unwrap();
    let sa = ServiceAccount {
        namespace: "reports".into(),
        name: "s3-reader".into(),
        annotations: [(
            "eks.amazonaws.com/role-arn".to_string(),
            format!("arn:aws:iam::{ACCOUNT}:role/s3-reader"),
        )]
        .into_iter()
        .collect(),
        ..ServiceAccount::default()
    };
    let provider = OidcProvider {
        arn: OidcProviderArn::parse(&format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
            issuer.host_path()
        ))
        .unwrap(),
        client_ids: Some(vec!["sts.amazonaws.com".into()]),
        thumbprints: Some(thumbprints.iter().map(|t| t.to_string()).collect()),
    };
    let facts = Facts {
        issuer: Fact::Known(issuer),
        oidc_providers: Fact::Known(vec![provider]),
        issuer_keys: Fact::Known(keys.clone()),
        ..Facts::for_service_account(sa)
    };
    let report = diagnose(&facts);
    let condition = report
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::OidcProviderValid)
        .unwrap();
    let reasons = report
        .findings
        .iter()
        .filter(|f| f.condition == ConditionType::OidcProviderValid)
        .map(|f| f.reason)
        .collect();
    (condition.status, reasons, condition.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_keys_are_compared_with_the_api_servers_and_the_chain_with_thumbprints() {
    let ca = Ca::new("issuer-test-ca").unwrap();
    let cert = ca.serving_cert().unwrap();
    // The server sends its CA after the leaf: the CA is the root-most certificate served.
    let server = TestIssuer::start(&cert, ca.cert_pem()).await;
    let (_dir, ca_file) = trust_file(&ca);
    let trust = IssuerTrust::new(Some(&ca_file)).unwrap();
    let sim = ControlPlane::start().await.unwrap();
    let cluster_keys = issuer_keys::cluster_keys(&sim.client().unwrap()).await;
    let Fact::Known(listed) = &cluster_keys else {
        panic!("the API server serves /openid/v1/jwks: {cluster_keys:?}");
    };
    assert_eq!(listed.len(), 1);
    let cluster_jwks: Value = sim
        .client()
        .unwrap()
        .request(
            http::Request::get("/openid/v1/jwks")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let issuer = Issuer::parse(&server.url()).unwrap();
    let ca_thumbprint = openssl_thumbprint(ca.cert_pem());
    let leaf_thumbprint = openssl_thumbprint(&cert.cert_pem);
    assert_ne!(ca_thumbprint, leaf_thumbprint);

    // (1) The public JWKS has the API server's key, and the provider the CA's thumbprint.
    server.publish(&cluster_jwks);
    let keys = issuer_keys::fetch(&issuer, &trust, cluster_keys.clone()).await;
    let chain = keys.chain.clone().expect("the JWKS host was reached");
    assert_eq!(
        chain.thumbprint, ca_thumbprint,
        "the root-most certificate served"
    );
    assert!(
        !chain.publicly_trusted,
        "trusted only through --issuer-ca-file"
    );
    let (status, reasons, message) =
        oidc_verdict(&server.url(), &keys, &[&ca_thumbprint.to_ascii_uppercase()]);
    assert_eq!(
        (status, reasons.as_slice()),
        (Status::True, &[][..]),
        "{message}"
    );
    assert!(message.contains("has all 1 key(s)"), "{message}");

    // (4) A thumbprint of another certificate: an error for a self-hosted issuer signed by a
    // private CA, a note for an EKS issuer (AWS does not use thumbprints for those).
    let (status, reasons, message) = oidc_verdict(&server.url(), &keys, &[&leaf_thumbprint]);
    assert_eq!(status, Status::False, "{message}");
    assert_eq!(reasons, [Reason::OIDCProviderThumbprintMismatch]);
    assert!(
        message.contains(&ca_thumbprint) && message.contains(&leaf_thumbprint),
        "{message}"
    );
    let eks = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let (status, reasons, message) = oidc_verdict(eks, &keys, &[&leaf_thumbprint]);
    assert_eq!(
        status,
        Status::True,
        "a note does not fail the check: {message}"
    );
    assert_eq!(reasons, [Reason::OIDCProviderThumbprintUnused]);
    assert!(message.contains("Note: "), "{message}");

    // (2) The API server signs with a key the public JWKS lacks (rotated, not republished).
    server.publish(&rotated(&cluster_jwks));
    let keys = issuer_keys::fetch(&issuer, &trust, cluster_keys.clone()).await;
    let (status, reasons, message) = oidc_verdict(&server.url(), &keys, &[&ca_thumbprint]);
    assert_eq!(status, Status::False, "{message}");
    assert_eq!(reasons, [Reason::IssuerSigningKeyMissing]);
    let kid = cluster_jwks["keys"][0]["kid"].as_str().unwrap();
    assert!(message.contains(kid), "{message}");

    // A served document STS cannot use either is an error.
    server.route("/keys", 200, "<Error><Code>AccessDenied</Code></Error>");
    let keys = issuer_keys::fetch(&issuer, &trust, cluster_keys.clone()).await;
    assert!(
        matches!(keys.published, Published::Invalid { .. }),
        "{:?}",
        keys.published
    );

    // (3) What irsa-doctor cannot fetch is Unknown, never an error: an HTTP error, a document
    // over the size bound, a certificate this machine does not trust, a closed port.
    server.route("/keys", 403, "denied");
    let denied = issuer_keys::fetch(&issuer, &trust, cluster_keys.clone()).await;
    server.route(
        "/keys",
        200,
        " ".repeat(irsa_core::issuer_keys::MAX_DOCUMENT_BYTES + 1),
    );
    let huge = issuer_keys::fetch(&issuer, &trust, cluster_keys.clone()).await;
    let untrusted = issuer_keys::fetch(
        &issuer,
        &IssuerTrust::new(None).unwrap(),
        cluster_keys.clone(),
    )
    .await;
    let closed = {
        let port = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gone = Issuer::parse(&format!("https://localhost:{port}")).unwrap();
        issuer_keys::fetch(&gone, &trust, cluster_keys.clone()).await
    };
    for (keys, says) in [
        (&denied, "HTTP 403"),
        (&huge, "at most"),
        (&untrusted, "--issuer-ca-file"),
        (&closed, "connecting to localhost"),
    ] {
        let Published::Unreachable { detail, .. } = &keys.published else {
            panic!("{says}: {:?}", keys.published);
        };
        assert!(detail.contains(says), "{says}: {detail}");
        let (status, reasons, message) = oidc_verdict(&server.url(), keys, &[&ca_thumbprint]);
        assert_eq!(status, Status::Unknown, "{message}");
        assert_eq!(reasons, [Reason::IssuerDiscoveryUnreachable], "{message}");
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let Err(e) = IssuerTrust::new(Some(&path)) else {
        panic!("an empty CA file was accepted");
    };
    let e = e.to_string();
    assert!(
        e.starts_with("--issuer-ca-file") && e.contains("PEM"),
        "{e}"
    );
    let Err(missing) = IssuerTrust::new(Some(&dir.path().join("absent.pem"))) else {
        panic!("a missing CA file was accepted");
    };
    assert!(missing.to_string().contains("absent.pem"), "{missing}");
}

/// `irsa-doctor check --issuer ... --issuer-ca-file ...` fetches the issuer's keys once and
/// reports a rotated key as the ServiceAccount's Ready reason, in the table and in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_rotated_signing_key_end_to_end() {
    let ca = Ca::new("issuer-test-ca").unwrap();
    let server = TestIssuer::start(&ca.serving_cert().unwrap(), ca.cert_pem()).await;
    let (_dir, ca_file) = trust_file(&ca);
    let sim = ControlPlane::start().await.unwrap();
    let cluster_jwks: Value = sim
        .client()
        .unwrap()
        .request(
            http::Request::get("/openid/v1/jwks")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let host_path = server.url().trim_start_matches("https://").to_string();
    admin
        .iam
        .create_open_id_connect_provider()
        .url(server.url())
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list(openssl_thumbprint(ca.cert_pem()))
        .send()
        .await
        .unwrap();
    admin
        .iam
        .create_role()
        .role_name("s3-reader")
        .assume_role_policy_document(trust_policy(&host_path, "default", "s3-reader"))
        .send()
        .await
        .unwrap();
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(sim.client().unwrap(), "default");
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "s3-reader", "annotations":
        {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/s3-reader")}}}))
        .unwrap();
    sas.create(&Default::default(), &sa).await.unwrap();
    let check = |output: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
        cmd.args(["check", "s3-reader", "--kubeconfig"])
            .arg(sim.kubeconfig_path())
            .args(["--issuer", &server.url(), "--issuer-ca-file"])
            .arg(&ca_file)
            .args(["-o", output]);
        aws_env(&mut cmd, &aws.url);
        tokio::task::block_in_place(|| cmd.output().unwrap())
    };

    server.publish(&cluster_jwks);
    let healthy = check("json");
    let stderr = String::from_utf8_lossy(&healthy.stderr);
    assert_eq!(healthy.status.code(), Some(0), "{stderr}");
    let json: Value = serde_json::from_slice(&healthy.stdout).unwrap();
    let oidc = &json["serviceAccounts"][0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "OIDCProviderValid")
        .cloned()
        .unwrap();
    assert_eq!(oidc["status"], "True", "{oidc}");
    let message = oidc["message"].as_str().unwrap();
    assert!(
        message.contains("has all 1 key(s)") && message.contains("thumbprints include"),
        "{oidc}"
    );

    server.publish(&rotated(&cluster_jwks));
    let broken = check("table");
    assert_eq!(
        broken.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    let table = String::from_utf8_lossy(&broken.stdout);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[3..], ["False", "IssuerSigningKeyMissing"], "{table}");
    let json: Value = serde_json::from_slice(&check("json").stdout).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["reason"] == "IssuerSigningKeyMissing" && f["severity"] == "error"),
        "{json}"
    );
}
