//! The risk core: pure, deterministic decisions (no I/O, no clock, no tokio).
//!
//! Everything here takes explicit values and timestamps and returns what follows from them;
//! the daemon's shell carries inputs in and commands out. Start reading at [`engine`]; the
//! pieces it is built from are [`window`] (rolling sums), [`limits`] (what a limit measures and
//! when it warns or breaches), [`guard`] (one strategy's state and reset rules), [`kill`] (the
//! kill latch), [`policy`] (what is enforced) and [`units`] (fixed-point counts and dollars).

pub mod engine;
pub mod guard;
pub mod ids;
pub mod kill;
pub mod limits;
pub mod policy;
pub mod units;
pub mod window;

pub use ids::{GroupAddress, GroupId};
pub use limits::{Evidence, LimitSpec, Ratio};
pub use units::{Contracts, Dollars, UnitParseError};
