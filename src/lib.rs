//! kalshi-riskd: a risk-management daemon for automated trading on the Kalshi exchange.
//!
//! The crate is one library with a thin binary (`src/main.rs`). Its parts, by directory:
//! - [`config`]: the daemon config and policy files, validated.
//! - [`daemon`]: the running service around the risk core.
//! - [`demo`]: the embedded demo (simulator, daemon, synthetic strategies).
//! - [`http`]: the metrics and health listener.
//! - [`kalshi`]: the exchange edge (request signing, wire types).
//! - [`risk`]: pure risk logic and the fixed-point units it computes with.
//! - [`sim`]: a faithful exchange simulator for tests, the demo and benchmarks.
//! - [`cli`]: the command line.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod http;
pub mod kalshi;
pub mod risk;
pub mod sim;
