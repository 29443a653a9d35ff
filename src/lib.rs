//! kalshi-riskd: a risk-management daemon for automated trading on the Kalshi exchange.
//!
//! The workspace's dependency graph is its architecture (ARCHITECTURE.md draws it):
//! - `riskd-units`: fixed-point contracts and dollars, group ids. Depends on nothing of ours.
//! - `riskd-core` ([`risk`]): the pure risk core. Depends only on the units, serde and a hasher.
//! - `riskd-kalshi` ([`kalshi`]): the exchange edge (signing, REST, WebSocket, FIX).
//! - `riskd-sim` ([`sim`], feature `sim`): the exchange simulator for tests, the demo and benches.
//! - this crate: the daemon around them, with
//!   - [`admin`]: the admin API (typed requests and answers, server, client);
//!   - [`config`]: the daemon config and policy files, validated;
//!   - [`daemon`]: the running service around the risk core;
//!   - [`http`]: the metrics and health listener;
//!   - [`cli`]: the command line;
//!   - [`cluster`]: cluster mode, a kill latch shared through etcd by the daemons of one account;
//!   - [`replay`]: policies run over a history of fills through the risk core (`replay`);
//!   - [`demo`] (feature `sim`): the embedded demo (simulator, daemon, synthetic strategies).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
#[cfg(feature = "sim")]
pub mod demo;
pub mod http;
pub mod logging;
pub mod replay;

pub use riskd_core as risk;
pub use riskd_kalshi as kalshi;
#[cfg(feature = "sim")]
pub use riskd_sim as sim;
