//! The risk core: pure, deterministic decisions (no I/O, no clock, no tokio).
//!
//! Everything here takes explicit values and timestamps and returns what follows from them;
//! the daemon's shell carries inputs in and commands out. Start reading at [`engine`]; the
//! pieces it is built from are [`window`] (rolling sums), [`limits`] (what a limit measures and
//! when it warns or breaches), [`guard`] (one strategy's state and reset rules), [`kill`] (the
//! kill latch) and [`policy`] (what is enforced). The fixed-point counts and dollars come from
//! `riskd-units`; this crate's manifest admits no I/O, clock or runtime crate.

#![forbid(unsafe_code)]

pub mod engine;
pub mod guard;
pub mod kill;
pub mod limits;
pub mod policy;
pub mod window;

pub use limits::{Evidence, LimitSpec, Ratio};
pub use riskd_units::{Contracts, Dollars, GroupAddress, GroupId, UnitParseError, ids, units};
