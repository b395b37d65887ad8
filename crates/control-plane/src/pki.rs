//! Keys and certificates made on the spot: the service-account signing key, and a CA with
//! serving certificates for the loopback servers the API server calls (webhook, node agent).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes
}

/// A fresh RSA-2048 private key, PKCS#8 PEM (what EKS signs tokens with: RS256).
pub fn rsa_private_key_pem() -> anyhow::Result<String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).context("generating an RSA key")?;
    Ok(key.serialize_pem())
}

/// A certificate authority for loopback servers.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A serving certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct ServingCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM (for a caBundle or a client's trust store).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `localhost` and 127.0.0.1.
    pub fn serving_cert(&self) -> anyhow::Result<ServingCert> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
