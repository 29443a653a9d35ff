//! The FIX control channel: FIXT.1.1 / FIX50SP2 order-group messages
//! (35=UOG request, 35=UOH response, 35=j business reject) over a session of our own.
//!
//! - [`codec`]: tag=value framing (BodyLength, CheckSum, data fields), total and fuzzed.
//! - [`session`]: the initiator session (TLS, signed Logon, heartbeats, sequence numbers,
//!   Logout, reconnect, rejects as typed errors), requests serialised one at a time.
//! - [`uog`]: the five order-group actions on a session, mirroring the REST client's calls.
//!
//! The simulator's acceptor (the `riskd-sim` crate) speaks the other side on the same engine as REST.

pub mod codec;
pub mod session;
pub mod tag;
pub mod uog;

pub use session::{FixAddr, FixConfig, FixSession, SessionStatus};
