//! The app's own credential (client secret or certificate) and certificate client assertions.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

/// `client_assertion_type` of a certificate (JWT bearer) credential.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion (Microsoft recommends 5–10 minutes).
pub const ASSERTION_LIFETIME: time::Duration = time::Duration::minutes(10);

/// What is wrong with the app-credentials secret. Never contains any part of the secret.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("the app-credentials secret is not valid JSON")]
    NotJson,
    #[error("the app-credentials secret must be a JSON object")]
    NotAnObject,
    #[error(
        "the app-credentials secret has no credential: expected {{\"client_secret\": \"...\"}} or \
         {{\"certificate_pem\": \"...\", \"private_key_pem\": \"...\"}}"
    )]
    Missing,
    #[error("the app-credentials secret has both a client secret and a certificate; keep only one")]
    Ambiguous,
    #[error("\"{0}\" in the app-credentials secret must be a non-empty string")]
    InvalidField(&'static str),
    #[error("the app-credentials secret has \"{present}\" but not \"{missing}\"")]
    IncompleteCertificate {
        present: &'static str,
        missing: &'static str,
    },
    #[error("certificate_pem is not a PEM certificate: {0}")]
    InvalidCertificate(&'static str),
    #[error("private_key_pem is not a PEM RSA private key (PKCS#1 or PKCS#8)")]
    InvalidPrivateKey,
    #[error("could not sign the client assertion: {0}")]
    Signing(String),
}

/// The app registration's credential, from the app-credentials secret.
#[derive(Clone)]
pub enum AppCredentials {
    ClientSecret(SecretString),
    Certificate(CertificateCredential),
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppCredentials::ClientSecret(_) => {
                f.write_str("AppCredentials::ClientSecret([redacted])")
            }
            AppCredentials::Certificate(c) => f
                .debug_tuple("AppCredentials::Certificate")
                .field(c)
                .finish(),
        }
    }
}

impl AppCredentials {
    /// A SHA-256 digest of the credential (never logged): tells whether a re-read of the
    /// app-credentials secret found another credential than the one in use.
    pub fn fingerprint(&self) -> [u8; 32] {
        match self {
            AppCredentials::ClientSecret(secret) => {
                let mut digest = Sha256::new();
                digest.update(b"client_secret\0");
                digest.update(secret.expose_secret().as_bytes());
                digest.finalize().into()
            }
            AppCredentials::Certificate(cert) => cert.fingerprint,
        }
    }

    /// Parses `{"client_secret": "..."}` or `{"certificate_pem": "...", "private_key_pem": "..."}`.
    /// PEMs may carry their line breaks as `\n` escapes. Unknown fields are ignored.
    pub fn from_secret_json(json: &str) -> Result<Self, CredentialsError> {
        // Parsed as a Value first: serde's own errors could echo a mistyped secret value.
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|_| CredentialsError::NotJson)?;
        let object = value.as_object().ok_or(CredentialsError::NotAnObject)?;
        let field = |name: &'static str| -> Result<Option<String>, CredentialsError> {
            match object.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(CredentialsError::InvalidField(name)),
            }
        };
        let secret = field("client_secret")?;
        let certificate = field("certificate_pem")?;
        let key = field("private_key_pem")?;
        match (secret, certificate, key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(CredentialsError::Ambiguous),
            (Some(secret), None, None) => {
                Ok(AppCredentials::ClientSecret(SecretString::from(secret)))
            }
            (None, Some(certificate), Some(key)) => Ok(AppCredentials::Certificate(
                CertificateCredential::new(&certificate, SecretString::from(key))?,
            )),
            (None, Some(_), None) => Err(CredentialsError::IncompleteCertificate {
                present: "certificate_pem",
                missing: "private_key_pem",
            }),
            (None, None, Some(_)) => Err(CredentialsError::IncompleteCertificate {
                present: "private_key_pem",
                missing: "certificate_pem",
            }),
            (None, None, None) => Err(CredentialsError::Missing),
        }
    }
}

/// A certificate credential: the public certificate (for its thumbprint) and the RSA key.
#[derive(Clone)]
pub struct CertificateCredential {
    certificate_pem: String,
    thumbprint_s256: String,
    key: EncodingKey,
    /// Of the certificate and the private key together (see [`AppCredentials::fingerprint`]).
    fingerprint: [u8; 32],
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("x5t#S256", &self.thumbprint_s256)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl CertificateCredential {
    pub fn new(
        certificate_pem: &str,
        private_key_pem: SecretString,
    ) -> Result<Self, CredentialsError> {
        let certificate_pem = certificate_pem.replace("\\n", "\n");
        let der = certificate_der(&certificate_pem)?;
        let thumbprint_s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
        let key_pem = private_key_pem.expose_secret().replace("\\n", "\n");
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes())
            .map_err(|_| CredentialsError::InvalidPrivateKey)?;
        let mut digest = Sha256::new();
        digest.update(b"certificate\0");
        digest.update(&der);
        digest.update(b"\0");
        digest.update(key_pem.trim().as_bytes());
        Ok(Self {
            certificate_pem,
            thumbprint_s256,
            key,
            fingerprint: digest.finalize().into(),
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// `x5t#S256`: base64url SHA-256 of the certificate's DER encoding.
    pub fn thumbprint_s256(&self) -> &str {
        &self.thumbprint_s256
    }

    /// A PS256 client assertion for `audience` (the token endpoint URL), valid from `now` for
    /// [`ASSERTION_LIFETIME`].
    pub fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: OffsetDateTime,
    ) -> Result<SecretString, CredentialsError> {
        let mut header = Header::new(Algorithm::PS256);
        header.typ = Some("JWT".into());
        header.x5t_s256 = Some(self.thumbprint_s256.clone());
        let issued = now.unix_timestamp();
        let claims = AssertionClaims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: issued,
            iat: issued,
            exp: issued + ASSERTION_LIFETIME.whole_seconds(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| CredentialsError::Signing(e.to_string()))
    }
}

/// The DER bytes of the first `CERTIFICATE` block of a PEM.
fn certificate_der(pem: &str) -> Result<Vec<u8>, CredentialsError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN).ok_or(CredentialsError::InvalidCertificate(
        "no BEGIN CERTIFICATE line",
    ))? + BEGIN.len();
    let len = pem[start..]
        .find(END)
        .ok_or(CredentialsError::InvalidCertificate(
            "no END CERTIFICATE line",
        ))?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| CredentialsError::InvalidCertificate("the body is not base64"))?;
    // An X.509 certificate is a DER SEQUENCE.
    if der.len() < 64 || der[0] != 0x30 {
        return Err(CredentialsError::InvalidCertificate(
            "the body is not a DER certificate",
        ));
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const CERT: &str = include_str!("testdata/test-cert.pem");
    const KEY: &str = include_str!("testdata/test-key.pem");
    const PUBLIC_KEY: &str = include_str!("testdata/test-pub.pem");
    /// Computed with `openssl x509 -outform der | openssl dgst -sha256 -binary | base64url`.
    const CERT_X5T_S256: &str = "wSIOryXKkVikHu-m6_8C9djLlb9HLyJ6wTBOolRLjVU";

    fn cert_json() -> String {
        serde_json::json!({ "certificate_pem": CERT, "private_key_pem": KEY }).to_string()
    }

    #[test]
    fn parses_a_client_secret() {
        let creds =
            AppCredentials::from_secret_json(r#"{"client_secret":"s3cr3t~value"}"#).unwrap();
        assert!(
            matches!(&creds, AppCredentials::ClientSecret(s) if s.expose_secret() == "s3cr3t~value")
        );
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }

    #[test]
    fn parses_a_certificate_with_escaped_newlines() {
        let escaped = serde_json::json!({
            "certificate_pem": CERT.replace('\n', "\\n"),
            "private_key_pem": KEY.replace('\n', "\\n"),
        })
        .to_string();
        for json in [cert_json(), escaped] {
            let AppCredentials::Certificate(cert) =
                AppCredentials::from_secret_json(&json).unwrap()
            else {
                panic!("expected a certificate");
            };
            assert_eq!(cert.thumbprint_s256(), CERT_X5T_S256);
            assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
        }
    }

    #[test]
    fn malformed_secrets_get_clear_errors_without_their_content() {
        let cases = [
            ("not json", CredentialsError::NotJson),
            ("[1]", CredentialsError::NotAnObject),
            ("{}", CredentialsError::Missing),
            (
                r#"{"client_secret": ""}"#,
                CredentialsError::InvalidField("client_secret"),
            ),
            (
                r#"{"client_secret": 12345}"#,
                CredentialsError::InvalidField("client_secret"),
            ),
            (
                r#"{"client_secret": "x", "certificate_pem": "y"}"#,
                CredentialsError::Ambiguous,
            ),
            (
                r#"{"certificate_pem": "y"}"#,
                CredentialsError::IncompleteCertificate {
                    present: "certificate_pem",
                    missing: "private_key_pem",
                },
            ),
            (
                r#"{"private_key_pem": "y"}"#,
                CredentialsError::IncompleteCertificate {
                    present: "private_key_pem",
                    missing: "certificate_pem",
                },
            ),
            (
                r#"{"certificate_pem": "garbage", "private_key_pem": "y"}"#,
                CredentialsError::InvalidCertificate("no BEGIN CERTIFICATE line"),
            ),
        ];
        for (json, expected) in cases {
            let err = AppCredentials::from_secret_json(json).unwrap_err();
            assert_eq!(err, expected, "{json}");
            assert!(!err.to_string().contains("12345"));
        }
        let bad_key = serde_json::json!({ "certificate_pem": CERT, "private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----" });
        assert_eq!(
            AppCredentials::from_secret_json(&bad_key.to_string()).unwrap_err(),
            CredentialsError::InvalidPrivateKey
        );
    }

    #[test]
    fn client_assertion_header_and_claims() {
        let AppCredentials::Certificate(cert) =
            AppCredentials::from_secret_json(&cert_json()).unwrap()
        else {
            unreachable!()
        };
        let aud = "https://login.microsoftonline.com/contoso-tenant-id/oauth2/v2.0/token";
        let now = OffsetDateTime::now_utc();
        let jwt = cert.client_assertion("client-id-1", aud, now).unwrap();
        let jwt = jwt.expose_secret();

        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, Algorithm::PS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.x5t_s256.as_deref(), Some(CERT_X5T_S256));
        // The raw header names the thumbprint field as Entra expects.
        let raw_header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(raw_header["x5t#S256"], CERT_X5T_S256);

        let mut validation = Validation::new(Algorithm::PS256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&["client-id-1"]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
        let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "client-id-1");
        let iat = claims["iat"].as_i64().unwrap();
        assert_eq!(iat, now.unix_timestamp());
        assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
        assert_eq!(claims["exp"].as_i64().unwrap(), iat + 600);
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        let other = cert.client_assertion("client-id-1", aud, now).unwrap();
        assert_ne!(other.expose_secret(), jwt, "jti is unique per assertion");
    }
}
