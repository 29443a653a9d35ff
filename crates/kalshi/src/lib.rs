//! The exchange edge: request signing and the exchange's wire types.
//!
//! Everything the exchange sends or expects is described here once, with the exchange's own field
//! names; the rest of the crate works with typed values converted at this edge. The simulator
//! in the `riskd-sim` crate serves the same wire types, and the integration tests check the raw JSON so a
//! mistake here cannot hide behind both sides agreeing.

pub mod auth;
pub mod budget;
pub mod channel;
pub mod clock;
pub mod control;
pub mod error;
pub mod fix;
pub mod group;
pub mod op;
pub mod rest;
pub mod retry;
pub mod stream;
pub mod trigger;
pub mod wire;
pub mod ws;

pub use auth::{KeyError, SignedHeaders, Signer};
pub use channel::GroupChannel;
pub use control::GroupControl;
pub use error::ExchangeError;
pub use group::{GroupAddress, GroupId};
pub use op::Op;
pub use rest::{RestClient, RestConfig};

/// The host's trusted root certificates (TLS to the exchange: FIX and the Trigger lane).
pub(crate) fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no trusted root certificates found for TLS ({} error(s) reading them; set SSL_CERT_FILE)",
            found.errors.len()
        ));
    }
    Ok(roots)
}

/// Makes aws-lc-rs the process's TLS crypto provider (rustls needs exactly one). Safe to call
/// more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
