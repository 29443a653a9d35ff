//! Shared by the benchmarks: a simulator on loopback with one registered throwaway key.
#![allow(dead_code)]

use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::{GeneratedKey, generate_key, public_key_der_from_pem};
use kalshi_riskd::sim::{KeyRegistry, SimConfig, Simulator, Tier};

pub const KEY_ID: &str = "bench";

/// An unlimited-tier simulator on 127.0.0.1 that accepts `KEY_ID`, with its signer and key.
pub async fn simulator() -> (Simulator, Signer, GeneratedKey) {
    let key = generate_key().unwrap();
    let mut keys = KeyRegistry::default();
    keys.register(
        KEY_ID,
        &public_key_der_from_pem(key.public_pem.as_bytes(), "bench key").unwrap(),
    )
    .unwrap();
    let sim = Simulator::start(
        SimConfig {
            tier: Tier::Unlimited,
            keys,
            ..SimConfig::default()
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let signer = Signer::from_pem(KEY_ID, key.private_pem.as_bytes(), "bench key").unwrap();
    (sim, signer, key)
}
