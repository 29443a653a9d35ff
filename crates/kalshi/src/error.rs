//! What can go wrong talking to the exchange, classified for retry decisions.
//!
//! The exchange answers errors in three body shapes: nested
//! `{"error":{"code","message","details"}}`, flat `{"code","message","details"}` and bare
//! `{"msg"}`, plus `429 {"error":"too many requests"}`. All are parsed into one [`ExchangeError`].
//!
//! Classification:
//! - **retryable**: 429, 5xx, and transport failures. A retry is safe only for idempotent calls;
//!   the REST client retries those and never blindly retries a create.
//! - **outcome unknown**: the request may have been applied (5xx, or the connection failed
//!   after the request could have been sent). A create in that state is settled by listing.
//! - everything else (4xx) is final: retrying cannot help, and the error names the reason.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange answered with an error status.
    #[error("{op}: HTTP {status}{}", fmt_reason(code, message, details))]
    Status {
        op: &'static str,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        details: Option<String>,
    },
    /// 429: over the account's rate limit.
    #[error("{op}: rate limited by the exchange (HTTP 429)")]
    RateLimited { op: &'static str },
    /// No answer: connection refused, reset, or timed out.
    #[error("{op}: {reason}")]
    Transport {
        op: &'static str,
        reason: String,
        /// True when the request may have reached the exchange.
        maybe_sent: bool,
    },
    /// A success status with a body we cannot read.
    #[error("{op}: unexpected answer: {reason}")]
    Decode { op: &'static str, reason: String },
    /// FIX: the exchange refused the message at the session level (35=3 Reject), e.g. a
    /// malformed field.
    #[error("{op}: FIX session reject (35=3){}", fmt_fix(*reason, session_reject_reason, *ref_tag, text))]
    SessionReject {
        op: &'static str,
        /// 373 SessionRejectReason.
        reason: Option<u32>,
        /// 371 RefTagID: the field at fault.
        ref_tag: Option<u32>,
        /// 58 Text.
        text: Option<String>,
    },
    /// FIX: the exchange refused the request's business logic (35=j BusinessMessageReject),
    /// e.g. `ORDER_GROUP_NOT_FOUND`.
    #[error("{op}: FIX business reject (35=j){}", fmt_fix(*reason, business_reject_reason, None, text))]
    BusinessReject {
        op: &'static str,
        /// 380 BusinessRejectReason.
        reason: Option<u32>,
        /// 58 Text.
        text: Option<String>,
    },
}

/// 373 SessionRejectReason names (FIX 5.0 SP2).
pub fn session_reject_reason(r: u32) -> &'static str {
    match r {
        0 => "invalid tag number",
        1 => "required tag missing",
        2 => "tag not defined for this message type",
        3 => "undefined tag",
        4 => "tag specified without a value",
        5 => "value is incorrect for this tag",
        6 => "incorrect data format for value",
        7 => "decryption problem",
        8 => "signature problem",
        9 => "CompID problem",
        10 => "SendingTime accuracy problem",
        11 => "invalid MsgType",
        13 => "tag appears more than once",
        14 => "tag specified out of required order",
        15 => "repeating group fields out of order",
        16 => "incorrect NumInGroup count",
        99 => "other",
        _ => "unknown reason",
    }
}

/// 380 BusinessRejectReason names.
pub fn business_reject_reason(r: u32) -> &'static str {
    match r {
        0 => "other",
        1 => "unknown ID",
        2 => "unknown security",
        3 => "unsupported message type",
        4 => "application not available",
        5 => "conditionally required field missing",
        6 => "not authorized",
        8 => "rate limit exceeded",
        _ => "unknown reason",
    }
}

fn fmt_fix(
    reason: Option<u32>,
    names: fn(u32) -> &'static str,
    ref_tag: Option<u32>,
    text: &Option<String>,
) -> String {
    let mut out = String::new();
    if let Some(r) = reason {
        out.push_str(&format!(" reason {r} ({})", names(r)));
    }
    if let Some(t) = ref_tag {
        out.push_str(&format!(" on tag {t}"));
    }
    if let Some(t) = text {
        out.push_str(&format!(": {t}"));
    }
    out
}

/// The 58 Text the exchange gives when a group does not exist (or is not the subaccount's).
pub const FIX_GROUP_NOT_FOUND: &str = "ORDER_GROUP_NOT_FOUND";
/// The 58 Text for "outcome unknown".
pub const FIX_EXCHANGE_UNAVAILABLE: &str = "EXCHANGE_UNAVAILABLE";

fn fmt_reason(code: &Option<String>, message: &Option<String>, details: &Option<String>) -> String {
    let mut out = String::new();
    if let Some(c) = code {
        out.push_str(&format!(" {c}"));
    }
    if let Some(m) = message {
        out.push_str(&format!(": {m}"));
    }
    if let Some(d) = details {
        out.push_str(&format!(" ({d})"));
    }
    out
}

impl ExchangeError {
    /// Parses an error answer in any of the exchange's shapes.
    pub fn from_response(op: &'static str, status: u16, body: &[u8]) -> ExchangeError {
        if status == 429 {
            return ExchangeError::RateLimited { op };
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let (code, message, details) = match v.get("error") {
            Some(inner @ Value::Object(_)) => (
                text(inner, "code"),
                text(inner, "message"),
                text(inner, "details"),
            ),
            Some(Value::String(s)) => (None, Some(s.clone()), None),
            _ if v.get("code").is_some() => {
                (text(&v, "code"), text(&v, "message"), text(&v, "details"))
            }
            _ if v.get("msg").is_some() => (None, text(&v, "msg"), None),
            _ => {
                let raw = String::from_utf8_lossy(body);
                let raw: String = raw.chars().take(200).collect();
                (None, (!raw.is_empty()).then_some(raw), None)
            }
        };
        ExchangeError::Status {
            op,
            status,
            code,
            message,
            details,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ExchangeError::Status { status, .. } => Some(*status),
            ExchangeError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The exchange's error `code` (over FIX, the reject's 58 Text), when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ExchangeError::Status { code, .. } => code.as_deref(),
            ExchangeError::BusinessReject { text, .. }
            | ExchangeError::SessionReject { text, .. } => text.as_deref(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.code() == Some(FIX_GROUP_NOT_FOUND)
    }

    /// The exchange refused the request's signature as too old (401 `header_timestamp_expired`):
    /// it was not applied, and the same request signed afresh may well pass.
    pub fn is_timestamp_expired(&self) -> bool {
        self.status() == Some(401) && self.code() == Some("header_timestamp_expired")
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExchangeError::RateLimited { .. } | ExchangeError::Transport { .. } => true,
            ExchangeError::Status { status, .. } => *status >= 500,
            ExchangeError::Decode { .. } | ExchangeError::SessionReject { .. } => false,
            ExchangeError::BusinessReject { reason, text, .. } => {
                matches!(reason, Some(4 | 8)) || text.as_deref() == Some(FIX_EXCHANGE_UNAVAILABLE)
            }
        }
    }

    /// Whether the request may have been applied even though it failed.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ExchangeError::Transport { maybe_sent, .. } => *maybe_sent,
            ExchangeError::Status { status, .. } => *status >= 500,
            ExchangeError::Decode { .. } => true,
            ExchangeError::RateLimited { .. } | ExchangeError::SessionReject { .. } => false,
            ExchangeError::BusinessReject { text, .. } => {
                text.as_deref() == Some(FIX_EXCHANGE_UNAVAILABLE)
            }
        }
    }

    /// The HTTP status class a FIX outcome is counted under in `exchange_requests_total`, so
    /// alerts read the same on either channel: 429 for 380=8, 5xx for an exchange that could not
    /// process it, 4xx for any other reject, none when no answer came.
    pub fn pseudo_status(&self) -> Option<u16> {
        match self {
            ExchangeError::BusinessReject {
                reason: Some(8), ..
            } => Some(429),
            ExchangeError::BusinessReject {
                reason: Some(4), ..
            } => Some(503),
            e @ ExchangeError::BusinessReject { .. } if e.outcome_unknown() => Some(503),
            ExchangeError::BusinessReject { .. } | ExchangeError::SessionReject { .. } => Some(400),
            e => e.status(),
        }
    }

    pub(crate) fn transport(op: &'static str, e: &reqwest::Error) -> ExchangeError {
        // A connect failure means nothing was sent; anything later (timeout, reset while
        // waiting for the answer) may have reached the exchange.
        let maybe_sent = !e.is_connect();
        ExchangeError::Transport {
            op,
            reason: error_chain(e),
            maybe_sent,
        }
    }
}

/// An error and its sources on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_three_error_shapes_and_429() {
        let nested = ExchangeError::from_response(
            "create",
            400,
            br#"{"error":{"code":"invalid_parameters","message":"bad limit","details":"x"}}"#,
        );
        assert_eq!(nested.code(), Some("invalid_parameters"));
        assert_eq!(
            nested.to_string(),
            "create: HTTP 400 invalid_parameters: bad limit (x)"
        );
        let flat = ExchangeError::from_response(
            "create",
            400,
            br#"{"code":"bad_request","message":"decode","details":"eof"}"#,
        );
        assert_eq!(flat.code(), Some("bad_request"));
        let bare = ExchangeError::from_response("list", 400, br#"{"msg":"invalid subaccount"}"#);
        assert!(bare.to_string().contains("invalid subaccount"), "{bare}");
        let rl = ExchangeError::from_response("trigger", 429, br#"{"error":"too many requests"}"#);
        assert_eq!(rl, ExchangeError::RateLimited { op: "trigger" });
        let html = ExchangeError::from_response("get", 502, b"<html>bad gateway</html>");
        assert!(html.to_string().contains("bad gateway"), "{html}");
    }

    #[test]
    fn classification() {
        let e = |status| ExchangeError::from_response("op", status, b"{}");
        assert!(!e(400).is_retryable() && !e(400).outcome_unknown());
        assert!(!e(404).is_retryable() && e(404).is_not_found());
        assert!(e(500).is_retryable() && e(500).outcome_unknown());
        assert!(e(429).is_retryable() && !e(429).outcome_unknown());
    }
}
