//! The exchange edge: request signing and the exchange's wire types.
//!
//! Everything the exchange sends or expects is described here once, with the exchange's own field
//! names; the rest of the crate works with typed values converted at this edge. The simulator
//! in `crate::sim` serves the same wire types, and the integration tests check the raw JSON so a
//! mistake here cannot hide behind both sides agreeing.

pub mod auth;
pub mod wire;

pub use auth::{KeyError, SignedHeaders, Signer};
