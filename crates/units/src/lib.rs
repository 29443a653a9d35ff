//! The values every part of kalshi-riskd shares: fixed-point [`Contracts`] and [`Dollars`]
//! (exact integers, never floats), and the ids that name an order group on the exchange.

#![forbid(unsafe_code)]

pub mod ids;
pub mod units;

pub use ids::{GroupAddress, GroupId};
pub use units::{Contracts, Dollars, UnitParseError};
