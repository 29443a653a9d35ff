//! Shared by the benchmarks: a simulator on loopback with one registered throwaway key.
#![allow(dead_code)]

use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::{GeneratedKey, generate_key, public_key_der_from_pem};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A daemon config in `dir` against `sim`: the key, `k.toml` (managed kill scope, a metrics
/// port of its own, JSON logs) and `policies` (file name, text).
pub fn write_config(dir: &Path, sim: &Simulator, key_pem: &str, policies: &[(String, String)]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.join("k.toml"),
        format!(
            "[exchange]\nenvironment = \"sim\"\nrest_url = \"{}\"\nws_url = \"{}\"\napi_key_id = \"bench\"\nprivate_key_path = \"key.pem\"\nwrite_budget_per_s = 5000\n[policies]\ndir = \"policies\"\n[state]\ndir = \"state\"\n[kill]\nscope = \"managed\"\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"admin.sock\"\n[log]\nformat = \"json\"\n",
            sim.rest_url(),
            sim.ws_url()
        ),
    )
    .unwrap();
    for (name, text) in policies {
        std::fs::write(dir.join("policies").join(name), text).unwrap();
    }
}

/// Starts the daemon and waits for READY=1 (for a minute).
pub fn start_daemon(dir: &Path) -> Child {
    start_daemon_within(dir, Duration::from_secs(60))
}

/// Starts the daemon and waits for READY=1 for at most `patience`.
pub fn start_daemon_within(dir: &Path, patience: Duration) -> Child {
    let sock = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock);
    let notify = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    notify.set_read_timeout(Some(patience)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["run", "--config"])
        .arg(dir.join("k.toml"))
        .env("NOTIFY_SOCKET", &sock)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut buf = [0u8; 512];
    loop {
        match notify.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                return child;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no READY=1 within {patience:?}: {e}");
            }
        }
    }
}
