//! The FIX control channel (DESIGN.md §10): FIXT.1.1 / FIX50SP2 order-group messages
//! (35=UOG request, 35=UOH response, 35=j business reject).
//!
//! So far: the tag=value codec ([`codec`]). The session layer (TLS, signed Logon, heartbeats,
//! sequence numbers), the UOG/UOH messages, the simulator's acceptor and the daemon's use of
//! the channel are still to come (the FIX issue).

pub mod codec;
