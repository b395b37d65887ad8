//! Projected ServiceAccount tokens: RS256 JWTs shaped like the ones kube-apiserver issues, plus
//! the OIDC discovery document and JWKS that let a verifier (an emulated STS) check them.

// The signing key below is a TEST FIXTURE: a throwaway RSA key generated for kube-sim, committed on
// purpose so tokens and JWKS are reproducible across runs. It protects nothing and must never be
// used outside tests.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The embedded test-only RSA private key (PKCS#8 PEM).
const TEST_SIGNING_KEY_PEM: &str = include_str!("test-signing-key.pem");

/// An EKS-shaped issuer URL (`https://oidc.eks.<region>.amazonaws.com/id/<32 hex>`) for tests that
/// need a realistic one.
pub const DEFAULT_ISSUER: &str =
    "https://oidc.eks.us-east-1.amazonaws.com/id/04E34DC5AA5EE799E454E1503A8E8EF5";

/// Issues projected ServiceAccount tokens for one issuer URL, signed with the embedded test key.
#[derive(Clone)]
pub struct TokenIssuer {
    issuer: String,
    key: EncodingKey,
    kid: String,
    n: String,
    e: String,
}

impl std::fmt::Debug for TokenIssuer {
    // Hand-written because `EncodingKey` has no `Debug`; the key id identifies the key anyway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer whose tokens carry `iss` = `issuer_url`, exactly as given.
    pub fn new(issuer_url: &str) -> TokenIssuer {
        // The key is a compile-time constant, so failures here are build defects, not input errors.
        let key = EncodingKey::from_rsa_pem(TEST_SIGNING_KEY_PEM.as_bytes())
            .expect("embedded test signing key is a valid RSA PEM");
        let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)
            .expect("embedded test signing key yields an RSA JWK");
        // The RFC 7638 thumbprint is stable for the key; kube-apiserver hashes the DER public key
        // instead, but verifiers only need the kid to match the JWKS entry.
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .expect("an RSA JWK has a thumbprint");
        let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
            unreachable!("an RSA encoding key yields RSA JWK parameters")
        };
        TokenIssuer {
            issuer: issuer_url.to_owned(),
            key,
            kid,
            n: rsa.n,
            e: rsa.e,
        }
    }

    /// The issuer URL tokens carry as `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A signed token for ServiceAccount `namespace/service_account`, valid from now for
    /// `expiration_seconds`, shaped like a kubelet-requested projected token: `iss`, `sub`
    /// (`system:serviceaccount:<ns>:<name>`), `aud` (always an array), `exp`, `iat`, `nbf`, and the
    /// `kubernetes.io` claim naming the namespace and ServiceAccount; header `alg` RS256 and `kid`.
    pub fn sign(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: &[String],
        expiration_seconds: i64,
    ) -> String {
        let now = jiff::Timestamp::now().as_second();
        let claims = json!({
            "aud": audiences,
            "exp": now.saturating_add(expiration_seconds),
            "iat": now,
            "iss": self.issuer,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account},
            },
            "nbf": now,
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
        });
        // kube-apiserver's header has no `typ`, only `alg` and `kid`.
        let header = Header {
            typ: None,
            kid: Some(self.kid.clone()),
            ..Header::new(Algorithm::RS256)
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .expect("signing JSON claims with the embedded RSA key cannot fail")
    }

    /// The `/.well-known/openid-configuration` document, as kube-apiserver serves it.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// The JWKS (`/openid/v1/jwks`) holding the public half of the signing key, with `n` and `e`
    /// base64url-encoded without padding.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
        }]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(DEFAULT_ISSUER)
    }

    fn audiences(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    fn key_from_jwks(jwks: &Value) -> DecodingKey {
        let key = &jwks["keys"][0];
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap()
    }

    fn validation(aud: &str) -> Validation {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[aud]);
        v.set_issuer(&[DEFAULT_ISSUER]);
        v.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "sub", "aud"]);
        v
    }

    #[test]
    fn default_issuer_is_eks_shaped() {
        let id = DEFAULT_ISSUER
            .strip_prefix("https://oidc.eks.us-east-1.amazonaws.com/id/")
            .unwrap();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
    }

    #[test]
    fn token_verifies_against_the_jwks_and_has_kubernetes_claims() {
        let issuer = issuer();
        let token = issuer.sign("team-a", "app", &audiences(&["sts.amazonaws.com"]), 3600);
        let data = decode::<Value>(
            &token,
            &key_from_jwks(&issuer.jwks()),
            &validation("sts.amazonaws.com"),
        )
        .unwrap();
        let claims = data.claims;
        assert_eq!(claims["iss"], DEFAULT_ISSUER);
        assert_eq!(claims["sub"], "system:serviceaccount:team-a:app");
        assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
        assert_eq!(
            claims["kubernetes.io"],
            json!({"namespace": "team-a", "serviceaccount": {"name": "app"}})
        );
        let iat = claims["iat"].as_i64().unwrap();
        assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
        assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3600);
        let now = jiff::Timestamp::now().as_second();
        assert!((now - iat).abs() < 60);
    }

    #[test]
    fn header_is_rs256_with_the_jwks_kid_and_no_typ() {
        let issuer = issuer();
        let token = issuer.sign("ns", "sa", &audiences(&["a"]), 600);
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ, None);
        assert_eq!(
            header.kid.as_deref(),
            issuer.jwks()["keys"][0]["kid"].as_str()
        );
    }

    #[test]
    fn audience_is_always_an_array_even_for_one_or_many() {
        let issuer = issuer();
        let key = key_from_jwks(&issuer.jwks());
        let token = issuer.sign("ns", "sa", &audiences(&["one", "two"]), 600);
        let claims = decode::<Value>(&token, &key, &validation("two"))
            .unwrap()
            .claims;
        assert_eq!(claims["aud"], json!(["one", "two"]));

        let token = issuer.sign("ns", "sa", &[], 600);
        let mut v = validation("x");
        v.validate_aud = false;
        let claims = decode::<Value>(&token, &key, &v).unwrap().claims;
        assert_eq!(claims["aud"], json!([]));
    }

    #[test]
    fn wrong_audience_issuer_or_expiry_is_rejected() {
        let issuer = issuer();
        let key = key_from_jwks(&issuer.jwks());
        let token = issuer.sign("ns", "sa", &audiences(&["sts.amazonaws.com"]), 600);
        assert!(decode::<Value>(&token, &key, &validation("other")).is_err());

        let other = TokenIssuer::new("https://example.com/id/1");
        let foreign = other.sign("ns", "sa", &audiences(&["sts.amazonaws.com"]), 600);
        // Same key, so the signature checks out, but the issuer does not match.
        assert!(decode::<Value>(&foreign, &key, &validation("sts.amazonaws.com")).is_err());

        let expired = issuer.sign("ns", "sa", &audiences(&["sts.amazonaws.com"]), -3600);
        assert!(decode::<Value>(&expired, &key, &validation("sts.amazonaws.com")).is_err());
    }

    #[test]
    fn tampered_token_fails_verification() {
        let issuer = issuer();
        let key = key_from_jwks(&issuer.jwks());
        let token = issuer.sign("ns", "sa", &audiences(&["sts.amazonaws.com"]), 600);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = issuer.sign("ns", "admin", &audiences(&["sts.amazonaws.com"]), 600);
        parts[1] = forged_claims.split('.').nth(1).unwrap();
        let tampered = parts.join(".");
        assert!(decode::<Value>(&tampered, &key, &validation("sts.amazonaws.com")).is_err());
    }

    #[test]
    fn jwks_has_one_rsa_signing_key_in_unpadded_base64url() {
        let jwks = issuer().jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["e"], "AQAB");
        let n = key["n"].as_str().unwrap();
        // 2048-bit modulus: 256 bytes is 342 unpadded base64 characters.
        assert_eq!(n.len(), 342);
        assert!(n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(!key["kid"].as_str().unwrap().is_empty());
    }

    #[test]
    fn key_id_is_stable_across_issuers() {
        let a = TokenIssuer::new(DEFAULT_ISSUER);
        let b = TokenIssuer::new("https://other.example");
        assert_eq!(a.jwks(), b.jwks());
    }

    #[test]
    fn openid_configuration_points_at_the_jwks() {
        let issuer = issuer();
        assert_eq!(issuer.issuer(), DEFAULT_ISSUER);
        assert_eq!(
            issuer.openid_configuration(),
            json!({
                "issuer": DEFAULT_ISSUER,
                "jwks_uri": format!("{DEFAULT_ISSUER}/openid/v1/jwks"),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
        );
        let slashed = TokenIssuer::new("https://example.com/");
        assert_eq!(slashed.issuer(), "https://example.com/");
        assert_eq!(
            slashed.openid_configuration()["jwks_uri"],
            "https://example.com/openid/v1/jwks"
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let text = format!("{:?}", issuer());
        assert!(text.contains(DEFAULT_ISSUER));
        assert!(!text.contains("PRIVATE"));
    }
}
