//! Request authentication as the exchange does it: every REST request and the WebSocket upgrade
//! carry `KALSHI-ACCESS-KEY`, `-TIMESTAMP` (ms) and `-SIGNATURE` (base64 RSA-PSS SHA-256 over
//! `timestamp + METHOD + path`, path without query), checked against the registered public keys.
//!
//! Timestamp window: the exchange's is measured only loosely (5 s old and 30 s ahead are
//! accepted, 30 s old is refused). The simulator takes the strictest reading
//! consistent with that: at most [`MAX_AGE_MS`] old and [`MAX_AHEAD_MS`] ahead. A client that
//! pre-signs requests must refresh them inside 5 s to pass here, and so will pass on the exchange.

use std::collections::HashMap;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;

use riskd_kalshi::auth::{HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};

pub const MAX_AGE_MS: i64 = 5_000;
pub const MAX_AHEAD_MS: i64 = 30_000;

/// Why a request was refused; each maps to the exchange's 401 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    MissingHeaders,
    UnknownKey,
    BadTimestamp,
    Expired,
    BadSignature,
}

impl AuthFailure {
    /// `(code, details)` of the nested 401 error body.
    pub fn code_and_details(&self) -> (&'static str, &'static str) {
        match self {
            AuthFailure::MissingHeaders => ("authentication_error", "MISSING_AUTH_HEADERS"),
            AuthFailure::UnknownKey => ("authentication_error", "NOT_FOUND"),
            AuthFailure::BadTimestamp => ("authentication_error", "INVALID_TIMESTAMP"),
            AuthFailure::Expired => ("header_timestamp_expired", "TIMESTAMP_OUTSIDE_WINDOW"),
            AuthFailure::BadSignature => ("authentication_error", "INCORRECT_API_KEY_SIGNATURE"),
        }
    }
}

/// The public keys registered with the simulated account.
#[derive(Default, Clone)]
pub struct KeyRegistry {
    keys: HashMap<String, ParsedPublicKey>,
}

impl std::fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRegistry {
    /// Registers a SubjectPublicKeyInfo (or PKCS#1) DER public key under an API key id.
    pub fn register(&mut self, key_id: &str, public_der: &[u8]) -> Result<(), String> {
        let key = ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, public_der)
            .map_err(|e| format!("public key for {key_id}: {e}"))?;
        self.keys.insert(key_id.to_owned(), key);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a base64 RSA-PSS signature over `message` by `key_id` (the FIX Logon's 96).
    pub fn verify_message(
        &self,
        key_id: &str,
        message: &[u8],
        signature_b64: &str,
    ) -> Result<(), AuthFailure> {
        let key = self.keys.get(key_id).ok_or(AuthFailure::UnknownKey)?;
        let sig = BASE64
            .decode(signature_b64)
            .map_err(|_| AuthFailure::BadSignature)?;
        key.verify_sig(message, &sig)
            .map_err(|_| AuthFailure::BadSignature)
    }

    /// Checks one request's headers; `path` is the URL path (any query is ignored).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        now_ms: i64,
    ) -> Result<String, AuthFailure> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(key_id), Some(ts), Some(sig)) = (
            get(HEADER_KEY),
            get(HEADER_TIMESTAMP),
            get(HEADER_SIGNATURE),
        ) else {
            return Err(AuthFailure::MissingHeaders);
        };
        let key = self.keys.get(key_id).ok_or(AuthFailure::UnknownKey)?;
        let ts_ms: i64 = ts.parse().map_err(|_| AuthFailure::BadTimestamp)?;
        if ts_ms < now_ms - MAX_AGE_MS || ts_ms > now_ms + MAX_AHEAD_MS {
            return Err(AuthFailure::Expired);
        }
        let sig = BASE64.decode(sig).map_err(|_| AuthFailure::BadSignature)?;
        let path = path.split('?').next().unwrap_or(path);
        let mut message = Vec::with_capacity(ts.len() + method.len() + path.len());
        message.extend_from_slice(ts.as_bytes());
        message.extend_from_slice(method.as_bytes());
        message.extend_from_slice(path.as_bytes());
        key.verify_sig(&message, &sig)
            .map_err(|_| AuthFailure::BadSignature)?;
        Ok(key_id.to_owned())
    }
}
