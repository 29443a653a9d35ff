//! The risk core: pure, deterministic decisions (no I/O, no clock, no tokio).
//!
//! For now it holds the domain units shared by every layer; the windows, limits, guard and kill
//! latch arrive with the risk-core issue. Everything here takes explicit values and timestamps.

pub mod units;

pub use units::{Contracts, Dollars, UnitParseError};
