//! The issuer's keys as STS fetches them: `<issuer>/.well-known/openid-configuration`, then the
//! JWKS its `jwks_uri` names, over HTTPS, keeping the certificate chain the JWKS host serves for
//! the IAM thumbprint; and the keys the API server signs tokens with (`/openid/v1/jwks`).
//!
//! Fetched once per run, and only for an issuer from configuration (`--issuer`) or
//! `eks:DescribeCluster`: never for one a user-controlled object names. Each request is bounded
//! in time ([`TIMEOUT`]) and size ([`MAX_DOCUMENT_BYTES`]); redirects are not followed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use irsa_core::facts::Unavailable;
use irsa_core::issuer_keys::{
    parse_discovery, parse_jwks, IssuerKeys, JsonWebKey, Published, ServedChain, MAX_DOCUMENT_BYTES,
};
use irsa_core::{Fact, Issuer, Reason};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::ServerCertVerifier as _;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The longest one request (connect, TLS, response) may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the issuer's trust store cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum IssuerTrustError {
    /// The CA file cannot be read.
    #[error("--issuer-ca-file {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("--issuer-ca-file {path:?}: {problem}; give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)")]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The TLS configuration cannot be built.
    #[error("setting up TLS for the issuer's documents: {0}")]
    Tls(String),
}

/// Whom the issuer's TLS certificates are checked against: the system's trust store, plus the
/// CAs of `--issuer-ca-file` (a private CA, or a test's).
#[derive(Clone)]
pub struct IssuerTrust {
    config: Arc<rustls::ClientConfig>,
    system: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl IssuerTrust {
    /// The system's roots, plus those in the PEM file `extra_ca_file`.
    pub fn new(extra_ca_file: Option<&Path>) -> Result<IssuerTrust, IssuerTrustError> {
        let extra = match extra_ca_file {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| IssuerTrustError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| IssuerTrustError::Certificates {
                        path: path.to_path_buf(),
                        problem: e.to_string(),
                    })?;
                if certs.is_empty() {
                    return Err(IssuerTrustError::Certificates {
                        path: path.to_path_buf(),
                        problem: "it holds no certificate".into(),
                    });
                }
                certs
            }
        };
        let mut system = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "reading the system's trust store");
        }
        // A certificate the system store holds but webpki cannot use is skipped, as browsers do.
        let _ = system.add_parsable_certificates(native.certs);
        let mut roots = system.clone();
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| IssuerTrustError::Certificates {
                    path: extra_ca_file.map(Path::to_path_buf).unwrap_or_default(),
                    problem: format!("a certificate is not a usable CA: {e}"),
                })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| IssuerTrustError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(IssuerTrust {
            config: Arc::new(config),
            system: Arc::new(system),
            provider,
        })
    }

    /// Whether `chain` (end-entity first) verifies for `name` against the system's roots alone.
    fn publicly_trusted(&self, chain: &[CertificateDer<'static>], name: &ServerName<'_>) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.system.clone(),
            self.provider.clone(),
        )
        .build()
        .is_ok_and(|v| {
            v.verify_server_cert(leaf, intermediates, name, &[], UnixTime::now())
                .is_ok()
        })
    }
}

/// The issuer's discovery document, JWKS and the JWKS host's chain, to be judged against
/// `cluster_keys` (from [`cluster_keys`]).
pub async fn fetch(
    issuer: &Issuer,
    trust: &IssuerTrust,
    cluster_keys: Fact<Vec<JsonWebKey>>,
) -> IssuerKeys {
    let (published, chain) = published(issuer, trust).await;
    IssuerKeys {
        published,
        chain,
        cluster_keys,
    }
}

async fn published(issuer: &Issuer, trust: &IssuerTrust) -> (Published, Option<ServedChain>) {
    let url = format!("{}/.well-known/openid-configuration", issuer.url());
    let discovery = match get_ok(&url, trust).await {
        Ok((body, _)) => match parse_discovery(&body) {
            Ok(d) => d,
            Err(problem) => return (Published::Invalid { url, problem }, None),
        },
        Err(detail) => return (Published::Unreachable { url, detail }, None),
    };
    let url = discovery.jwks_uri;
    match get_ok(&url, trust).await {
        Ok((body, chain)) => match parse_jwks(&body) {
            Ok(keys) => (
                Published::Keys {
                    jwks_uri: url,
                    keys,
                },
                Some(chain),
            ),
            Err(problem) => (Published::Invalid { url, problem }, Some(chain)),
        },
        Err(detail) => (Published::Unreachable { url, detail }, None),
    }
}

/// The keys the API server verifies tokens with (the signing key among them), from its
/// `/openid/v1/jwks`; Unavailable, saying why, when it cannot be read (e.g. RBAC: the
/// `system:service-account-issuer-discovery` ClusterRole grants it).
pub async fn cluster_keys(client: &kube::Client) -> Fact<Vec<JsonWebKey>> {
    let request = http::Request::get("/openid/v1/jwks")
        .body(Vec::new())
        .expect("a static request is valid");
    let unavailable = |detail: String| {
        Fact::Unavailable(Unavailable {
            reason: Reason::KubernetesApiUnavailable,
            detail: format!("GET /openid/v1/jwks on the API server: {detail}"),
        })
    };
    match client.request_text(request).await {
        Ok(text) => match parse_jwks(text.as_bytes()) {
            Ok(keys) => Fact::Known(keys),
            Err(e) => unavailable(e.to_string()),
        },
        Err(e) => unavailable(e.to_string()),
    }
}

/// GETs `url` and returns its body when the answer is 200 OK, with the host's chain; an `Err`
/// says what failed, for [`Published::Unreachable`].
async fn get_ok(url: &str, trust: &IssuerTrust) -> Result<(Vec<u8>, ServedChain), String> {
    let (status, body, chain) = tokio::time::timeout(TIMEOUT, get(url, trust))
        .await
        .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))??;
    if status != http::StatusCode::OK {
        return Err(format!(
            "it answered HTTP {status}{}",
            if status.is_redirection() {
                "; redirects are not followed"
            } else {
                ""
            }
        ));
    }
    Ok((body, chain))
}

/// One HTTPS GET: status, body (at most [`MAX_DOCUMENT_BYTES`]) and the served chain.
async fn get(
    url: &str,
    trust: &IssuerTrust,
) -> Result<(http::StatusCode, Vec<u8>, ServedChain), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("not an https:// URL".into());
    }
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        return Err("the URL has no host".into());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("host {host:?}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(trust.config.clone())
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| {
            format!("TLS with {host}:{port}: {e} (a private CA is trusted with --issuer-ca-file)")
        })?;
    let certs: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let Some(last) = certs.last() else {
        return Err(format!("{host}:{port} presented no certificate"));
    };
    let chain = ServedChain {
        host: host.clone(),
        thumbprint: sha1_hex(last),
        publicly_trusted: trust.publicly_trusted(&certs, &name),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP with {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("irsa-doctor/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    // The connection is driven beside the exchange; it ends once the exchange drops the sender.
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| {
                format!("reading the answer (at most {MAX_DOCUMENT_BYTES} bytes are read): {e}")
            })?
            .to_bytes();
        Ok::<_, String>((status, body.to_vec()))
    };
    let (exchanged, _) = tokio::join!(exchange, connection);
    let (status, body) = exchanged?;
    Ok((status, body, chain))
}

/// Lower-case hex SHA-1 of a certificate's DER: the IAM thumbprint.
fn sha1_hex(cert: &CertificateDer<'_>) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
