//! Shared by the benchmarks: a simulator on loopback with one registered throwaway key.
#![allow(dead_code)]

use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::{GeneratedKey, generate_key, public_key_der_from_pem};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use kalshi_riskd::sim::{KeyRegistry, SimConfig, Simulator, Tier};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

pub const KEY_ID: &str = "bench";

/// The benches' runtime (multi-threaded, as the daemon's), with the TLS crypto provider
/// installed.
pub fn runtime() -> tokio::runtime::Runtime {
    kalshi_riskd::kalshi::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An unlimited-tier simulator on 127.0.0.1 that accepts `KEY_ID`, with its signer and key.
pub async fn simulator() -> (Simulator, Signer, GeneratedKey) {
    simulator_at(Tier::Unlimited).await
}

/// A simulator at `tier` on 127.0.0.1 that accepts `KEY_ID`, with its signer and key.
pub async fn simulator_at(tier: Tier) -> (Simulator, Signer, GeneratedKey) {
    let key = generate_key().unwrap();
    let mut keys = KeyRegistry::default();
    keys.register(
        KEY_ID,
        &public_key_der_from_pem(key.public_pem.as_bytes(), "bench key").unwrap(),
    )
    .unwrap();
    let sim = Simulator::start(
        SimConfig {
            tier,
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
    write_config_budget(dir, sim, key_pem, policies, 5000.0);
}

/// [`write_config`] with the write budget `writes_per_s`.
pub fn write_config_budget(
    dir: &Path,
    sim: &Simulator,
    key_pem: &str,
    policies: &[(String, String)],
    writes_per_s: f64,
) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.join("k.toml"),
        format!(
            "[exchange]\nenvironment = \"sim\"\nrest_url = \"{}\"\nws_url = \"{}\"\napi_key_id = \"bench\"\nprivate_key_path = \"key.pem\"\nwrite_budget_per_s = {}\n[policies]\ndir = \"policies\"\n[state]\ndir = \"state\"\n[kill]\nscope = \"managed\"\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"admin.sock\"\n[log]\nformat = \"json\"\n",
            sim.rest_url(),
            sim.ws_url(),
            writes_per_s
        ),
    )
    .unwrap();
    for (name, text) in policies {
        std::fs::write(dir.join("policies").join(name), text).unwrap();
    }
}

/// The daemon binary the benches run: this build's, or the one `KALSHI_RISKD_BIN` names (the
/// packaged build, say: `scripts/package.sh` leaves it at `target/dist/kalshi-riskd`).
pub fn daemon_binary() -> std::ffi::OsString {
    std::env::var_os("KALSHI_RISKD_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_kalshi-riskd").into())
}

/// Where a bench's daemon logs: the file `KALSHI_RISKD_BENCH_LOG` names (appended to), or
/// nowhere.
fn daemon_log() -> Stdio {
    let Some(path) = std::env::var_os("KALSHI_RISKD_BENCH_LOG") else {
        return Stdio::null();
    };
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => f.into(),
        Err(e) => panic!("KALSHI_RISKD_BENCH_LOG {}: {e}", path.to_string_lossy()),
    }
}

/// A daemon a bench started. Dropped while it still runs (a bench that panicked, say), it is
/// killed, so no bench leaves a daemon behind.
pub struct DaemonProcess(Child);

impl DaemonProcess {
    /// SIGTERM, and waits for it to exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for DaemonProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for DaemonProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the daemon and waits for READY=1 (for a minute).
pub fn start_daemon(dir: &Path) -> DaemonProcess {
    start_daemon_within(dir, Duration::from_secs(60))
}

/// Starts the daemon and waits for READY=1 for at most `patience`.
pub fn start_daemon_within(dir: &Path, patience: Duration) -> DaemonProcess {
    let sock = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock);
    let notify = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    notify.set_read_timeout(Some(patience)).unwrap();
    let child = Command::new(daemon_binary())
        .args(["run", "--config"])
        .arg(dir.join("k.toml"))
        .env("NOTIFY_SOCKET", &sock)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(daemon_log())
        .spawn()
        .unwrap();
    // Killed on the way out if READY=1 never comes.
    let daemon = DaemonProcess(child);
    let mut buf = [0u8; 512];
    loop {
        match notify.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                return daemon;
            }
            Ok(_) => continue,
            Err(e) => panic!("no READY=1 within {patience:?}: {e}"),
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `p` quantile (0 to 1) of `v`, sorting it.
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// A WebSocket on `sim` subscribed to `fill` and `order_group_updates`: what the exchange
/// publishes, timestamped by whoever reads it.
pub async fn observer(sim: &Simulator, signer: &Signer) -> Ws {
    observer_of(sim, signer, &["fill", "order_group_updates"]).await
}

/// A WebSocket on `sim` subscribed to `channels`, their acks read.
pub async fn observer_of(sim: &Simulator, signer: &Signer, channels: &[&str]) -> Ws {
    let mut req = sim.ws_url().into_client_request().unwrap();
    for (k, v) in signer.sign_now("GET", "/trade-api/ws/v2").pairs() {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"id":1,"cmd":"subscribe","params":{"channels":channels}}).to_string(),
    ))
    .await
    .unwrap();
    for _ in channels {
        ws.next().await;
    }
    ws
}

pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message")
            .unwrap()
            .unwrap()
        {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

pub fn state_groups(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("state/state.json")).unwrap()).unwrap()
}

/// A Trigger of `group` (subaccount 0, exchange index 0), signed now, as the bytes of one
/// HTTP/1.1 request to `host`.
pub fn trigger_request(host: &str, signer: &Signer, group: &str) -> Vec<u8> {
    let path = format!("/trade-api/v2/portfolio/order_groups/{group}/trigger");
    let mut head = format!(
        "PUT {path}?subaccount=0&exchange_index=0 HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
    );
    for (k, v) in signer.sign_now("PUT", &path).pairs() {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n{}");
    head.into_bytes()
}

/// Every thread's run time so far, in nanoseconds (`/proc/PID/task/*/schedstat`).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The floor: the least any client can do on this harness. A blocking WebSocket reads the fill
/// frame; a pre-signed Trigger is written at once on a warm keep-alive socket. No runtime, no
/// queue, no risk logic.
pub struct Floor {
    pub ws: tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>,
    pub rest: std::net::TcpStream,
    pub host: String,
}

impl Floor {
    pub fn connect(sim: &Simulator, signer: &Signer) -> Floor {
        let addr = sim.addr();
        let mut req = sim.ws_url().into_client_request().unwrap();
        for (k, v) in signer.sign_now("GET", "/trade-api/ws/v2").pairs() {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let (mut ws, _) = tokio_tungstenite::tungstenite::client(req, stream).unwrap();
        ws.send(Message::text(
            json!({"id":1,"cmd":"subscribe","params":{"channels":["fill"]}}).to_string(),
        ))
        .unwrap();
        ws.read().unwrap(); // subscribed
        let rest = std::net::TcpStream::connect(addr).unwrap();
        rest.set_nodelay(true).unwrap();
        Floor {
            ws,
            rest,
            host: addr.to_string(),
        }
    }

    /// A Trigger of `group`, signed now, as the bytes of one HTTP/1.1 request.
    pub fn armed(&self, signer: &Signer, group: &str) -> Vec<u8> {
        trigger_request(&self.host, signer, group)
    }

    /// Waits for the fill of its order (`client_order_id`), then fires `request` and reads
    /// its answer.
    pub fn fire_on_fill(&mut self, client_order_id: &str, request: &[u8]) {
        use std::io::{Read as _, Write as _};
        let mine = format!("\"client_order_id\":\"{client_order_id}\"");
        loop {
            if let Message::Text(t) = self.ws.read().unwrap()
                && t.as_str().contains(&mine)
            {
                break;
            }
        }
        self.rest.write_all(request).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.rest.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

/// A group (limit 1,000 contracts, subaccount 0) created straight on `sim`, not the daemon's;
/// its id.
pub async fn create_group(http: &reqwest::Client, sim: &Simulator, signer: &Signer) -> String {
    let path = "/trade-api/v2/portfolio/order_groups/create";
    let mut req = http
        .post(format!("http://{}{path}", sim.addr()))
        .json(&json!({"contracts_limit_fp": "1000"}));
    for (k, v) in signer.sign_now("POST", path).pairs() {
        req = req.header(k, v);
    }
    let created: Value = req.send().await.unwrap().json().await.unwrap();
    created["order_group_id"].as_str().unwrap().to_owned()
}
