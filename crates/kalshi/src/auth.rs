//! Kalshi request authentication: RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) over
//! `timestamp_ms + METHOD + path`, where the path includes `/trade-api/v2` and excludes the query.
//!
//! Keys are loaded from PEM in either PKCS#1 (`BEGIN RSA PRIVATE KEY`, as Kalshi downloads
//! may be) or PKCS#8 (`BEGIN PRIVATE KEY`, as `openssl genpkey` writes). A key file that its
//! group or other users can read is refused: the key can move money. Key material never appears
//! in `Debug` output or logs. Signing uses aws-lc-rs (about 0.86 ms per 2048-bit signature).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::pem::{PemObject, SectionKind};

/// The three headers that authenticate one request.
pub const HEADER_KEY: &str = "KALSHI-ACCESS-KEY";
pub const HEADER_TIMESTAMP: &str = "KALSHI-ACCESS-TIMESTAMP";
pub const HEADER_SIGNATURE: &str = "KALSHI-ACCESS-SIGNATURE";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read private key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "private key file {path} is readable by its group or by other users (mode {mode:o}); \
         run `chmod 600 {path}` or use systemd's LoadCredential="
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "{origin}: no PEM private key found (expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)"
    )]
    NoPem { origin: String },
    #[error("{origin}: unsupported PEM section {kind:?}; Kalshi keys are RSA (PKCS#1 or PKCS#8)")]
    Unsupported { origin: String, kind: SectionKind },
    #[error("{origin}: not a usable RSA private key: {reason}")]
    Rejected { origin: String, reason: String },
    #[error("{origin}: no PEM public key found (expected BEGIN PUBLIC KEY)")]
    NoPublicKey { origin: String },
    #[error("{origin}: not a usable RSA public key: {reason}")]
    PublicRejected { origin: String, reason: String },
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
}

/// Signs requests for one API key. Cheap to clone.
#[derive(Clone)]
pub struct Signer {
    key_id: Arc<str>,
    key: Arc<RsaKeyPair>,
    /// Signatures made by this key (shared by clones), for metrics and tests.
    signatures: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The authentication headers for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub key_id: String,
    pub timestamp_ms: String,
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs, ready to put on a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_KEY, &self.key_id),
            (HEADER_TIMESTAMP, &self.timestamp_ms),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

impl Signer {
    /// Loads a key from PEM text; `origin` names it in errors (a path, or "generated").
    pub fn from_pem(key_id: &str, pem: &[u8], origin: &str) -> Result<Self, KeyError> {
        let (kind, der) =
            <(SectionKind, Vec<u8>)>::from_pem_slice(pem).map_err(|_| KeyError::NoPem {
                origin: origin.to_owned(),
            })?;
        let rejected = |e: aws_lc_rs::error::KeyRejected| KeyError::Rejected {
            origin: origin.to_owned(),
            reason: e.to_string(),
        };
        let key = match kind {
            SectionKind::PrivateKey => RsaKeyPair::from_pkcs8(&der).map_err(rejected)?,
            SectionKind::RsaPrivateKey => RsaKeyPair::from_der(&der).map_err(rejected)?,
            other => {
                return Err(KeyError::Unsupported {
                    origin: origin.to_owned(),
                    kind: other,
                });
            }
        };
        Ok(Signer {
            key_id: key_id.into(),
            key: Arc::new(key),
            signatures: Arc::default(),
        })
    }

    /// Loads a key file, refusing one that is readable by group or others.
    pub fn from_pem_file(key_id: &str, path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let read_err = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let pem = std::fs::read(path).map_err(read_err)?;
        Self::from_pem(key_id, &pem, &path.display().to_string())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// How many signatures this key (and its clones) has made.
    pub fn signatures(&self) -> u64 {
        self.signatures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Signs `timestamp_ms + METHOD + path`. A query string on `path` is ignored, as the
    /// exchange requires.
    pub fn sign(&self, timestamp_ms: i64, method: &str, path: &str) -> SignedHeaders {
        let path = path.split('?').next().unwrap_or(path);
        let ts = timestamp_ms.to_string();
        let mut message = Vec::with_capacity(ts.len() + method.len() + path.len());
        message.extend_from_slice(ts.as_bytes());
        message.extend_from_slice(method.to_ascii_uppercase().as_bytes());
        message.extend_from_slice(path.as_bytes());
        SignedHeaders {
            key_id: self.key_id.to_string(),
            timestamp_ms: ts,
            signature: self.sign_base64(&message),
        }
    }

    /// RSA-PSS (SHA-256, salt = digest length) over `message`, base64: the signature the REST
    /// headers and the FIX Logon's 96 RawData carry.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Signing only fails for a signature buffer of the wrong size, which is sized above
        // from the key itself.
        self.key
            .sign(&RSA_PSS_SHA256, &rng, message, &mut sig)
            .expect("RSA-PSS signing into a modulus-sized buffer");
        self.signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        BASE64.encode(sig)
    }

    /// Signs with the current wall-clock time.
    pub fn sign_now(&self, method: &str, path: &str) -> SignedHeaders {
        self.sign(now_ms(), method, path)
    }
}

/// The credential name under systemd's `LoadCredential=`.
pub const CREDENTIAL_NAME: &str = "kalshi-key";

/// Where the private key is read from: `$CREDENTIALS_DIRECTORY/kalshi-key` when systemd passes
/// credentials (`credentials_dir`, the value of that variable), else the configured path.
pub fn key_path(configured: &Path, credentials_dir: Option<&Path>) -> PathBuf {
    match credentials_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(CREDENTIAL_NAME),
        _ => configured.to_owned(),
    }
}

/// Loads the signing key from [`key_path`].
pub fn load_signer(
    key_id: &str,
    configured: &Path,
    credentials_dir: Option<&Path>,
) -> Result<Signer, KeyError> {
    Signer::from_pem_file(key_id, &key_path(configured, credentials_dir))
}

/// Wall-clock milliseconds since the Unix epoch, as the exchange's timestamp header wants.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A freshly generated RSA-2048 key pair, as PEM text: for the demo, tests and the simulator's
/// throwaway keys. Never used for a real account.
pub struct GeneratedKey {
    /// PKCS#8 `BEGIN PRIVATE KEY`.
    pub private_pem: String,
    /// SubjectPublicKeyInfo `BEGIN PUBLIC KEY`, as registered with the exchange.
    pub public_pem: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

pub fn generate_key() -> Result<GeneratedKey, KeyError> {
    let err = |e: &dyn fmt::Display| KeyError::Generate(e.to_string());
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| err(&e))?;
    let private = pair.as_der().map_err(|e| err(&e))?;
    let public = pair.public_key().as_der().map_err(|e| err(&e))?;
    Ok(GeneratedKey {
        private_pem: pem_encode("PRIVATE KEY", private.as_ref()),
        public_pem: pem_encode("PUBLIC KEY", public.as_ref()),
    })
}

/// Parses a `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo) PEM into DER, for registering a key.
pub fn public_key_der_from_pem(pem: &[u8], origin: &str) -> Result<Vec<u8>, KeyError> {
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        match section {
            Ok((SectionKind::PublicKey, der)) => return Ok(der),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    Err(KeyError::NoPublicKey {
        origin: origin.to_owned(),
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn signature_covers_timestamp_method_and_path_without_query() {
        let key = generate_key().unwrap();
        let signer = Signer::from_pem("k1", key.private_pem.as_bytes(), "generated").unwrap();
        let h = signer.sign(
            1_703_123_456_789,
            "get",
            "/trade-api/v2/portfolio/order_groups?subaccount=3",
        );
        assert_eq!(h.timestamp_ms, "1703123456789");
        let public = public_key_der_from_pem(key.public_pem.as_bytes(), "generated").unwrap();
        let sig = BASE64.decode(&h.signature).unwrap();
        let verifier = UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &public);
        verifier
            .verify(
                b"1703123456789GET/trade-api/v2/portfolio/order_groups",
                &sig,
            )
            .expect("signature over the path without its query");
        assert!(
            verifier
                .verify(b"1703123456789GET/portfolio/order_groups", &sig)
                .is_err()
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = generate_key().unwrap();
        let signer = Signer::from_pem("k1", key.private_pem.as_bytes(), "generated").unwrap();
        let shown = format!("{signer:?} {key:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn refuses_group_readable_key_file_and_names_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let key = generate_key().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, &key.private_pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Signer::from_pem_file("k1", &path).unwrap_err();
        assert!(matches!(err, KeyError::TooOpen { .. }), "{err}");
        assert!(err.to_string().contains("key.pem"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Signer::from_pem_file("k1", &path).unwrap();
    }

    #[test]
    fn loads_pkcs1_keys_too() {
        // A test-only key written by `openssl genrsa -traditional`: PKCS#1, as Kalshi's
        // downloaded keys may be.
        let pem = include_bytes!("../../../tests/fixtures/pkcs1-test-key.pem");
        assert!(pem.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
        let signer = Signer::from_pem("k1", pem, "fixture").unwrap();
        assert_eq!(signer.sign(1, "GET", "/x").signature.len(), 344);
    }

    #[test]
    fn systemd_credentials_take_precedence_over_the_configured_path() {
        let cred = std::path::Path::new("/run/credentials/kalshi-riskd.service");
        let configured = std::path::Path::new("/etc/kalshi-riskd/key.pem");
        assert_eq!(key_path(configured, Some(cred)), cred.join("kalshi-key"));
        assert_eq!(key_path(configured, None), configured);
        let missing =
            load_signer("k", configured, Some(std::path::Path::new("/nonexistent"))).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/kalshi-key"),
            "{missing}"
        );
    }

    #[test]
    fn garbage_key_is_a_clear_error() {
        let err = Signer::from_pem("k1", b"not a key", "/etc/x.pem").unwrap_err();
        assert!(err.to_string().contains("/etc/x.pem"), "{err}");
        let err = Signer::from_pem(
            "k1",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "/etc/y.pem",
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::Rejected { .. }), "{err}");
    }
}
