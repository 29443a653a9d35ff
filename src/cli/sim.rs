//! `kalshi-riskd sim`: the exchange simulator standalone, with a throwaway key when none is given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::runtime;
use crate::kalshi::auth::{self, generate_key};
use crate::sim::{self, Faults, KeyRegistry, SimConfig, Simulator, Tier, TriggerBoundary};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8280")]
    pub listen: SocketAddr,
    /// API key id to accept; repeat, each paired with the --public-key in the same position.
    #[arg(long = "api-key-id", value_name = "ID")]
    pub api_key_ids: Vec<String>,
    /// PEM public key (BEGIN PUBLIC KEY) for the --api-key-id in the same position.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// Where to write a throwaway key when no key is given (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// Rate-limit tier: basic, advanced, expert, premier, paragon, prime, prestige or unlimited.
    #[arg(long, default_value = "basic")]
    pub tier: Tier,
    /// Interval between the server's WebSocket pings.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,
    /// Cap on order groups per user.
    #[arg(long, default_value_t = sim::engine::DEFAULT_MAX_GROUPS)]
    pub max_groups: usize,
    /// Trigger a group when its volume reaches the limit (default: when it exceeds it).
    #[arg(long)]
    pub trigger_at_limit: bool,
    /// Share (0 to 1) of REST requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Only paths starting with this prefix get injected errors.
    #[arg(long, value_name = "PREFIX")]
    pub error_path: Option<String>,
    /// Apply the request before answering with the injected 500 (outcome unknown to the client).
    #[arg(long)]
    pub error_after_apply: bool,
    /// Answer the first N authenticated REST requests with 429.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub burst_429: u64,
    /// Delay added to every REST answer.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Drop every WebSocket connection this often.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ws_drop_every: Option<Duration>,
    /// Start with every WebSocket silent (no data, no pings, socket open).
    #[arg(long)]
    pub ws_silent: bool,
    /// Address of the FIX acceptor (order groups over 35=UOG), or "off". When left at the
    /// default and the port is taken, the simulator runs without FIX and says so.
    #[arg(long, value_name = "ADDR|off")]
    pub fix_listen: Option<String>,
    /// Serve FIX over TLS with this PEM certificate chain (needs --fix-tls-key).
    #[arg(long, value_name = "FILE", requires = "fix_tls_key")]
    pub fix_tls_cert: Option<PathBuf>,
    /// The PEM private key of --fix-tls-cert.
    #[arg(long, value_name = "FILE", requires = "fix_tls_cert")]
    pub fix_tls_key: Option<PathBuf>,
    /// Start with every FIX session silent (no heartbeats, no answers, socket open).
    #[arg(long)]
    pub fix_silent: bool,
}

/// Where the simulator's FIX acceptor listens unless told otherwise (the exchange's KalshiNR
/// port).
pub const SIM_FIX_DEFAULT: &str = "127.0.0.1:8228";

pub(super) fn run(args: SimArgs) -> ExitCode {
    let cfg = match sim_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("kalshi-riskd sim: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kalshi-riskd sim: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("kalshi-riskd sim: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        };
        let sim = match Simulator::start(cfg, listener).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kalshi-riskd sim: {e}");
                return ExitCode::from(1);
            }
        };
        let addr = sim.addr();
        let fix = match start_sim_fix(&sim, &args).await {
            Ok(fix) => fix,
            Err(e) => {
                eprintln!("kalshi-riskd sim: {e}");
                return ExitCode::from(1);
            }
        };
        println!("kalshi-riskd sim listening on {addr}");
        println!("  REST     {}", sim.rest_url());
        println!("  WS       {}", sim.ws_url());
        if let Some(fix) = fix {
            println!("  FIX      {fix} (TargetCompID KalshiNR or KalshiRT)");
        }
        println!("  control  http://{addr}/_sim/");
        tracing::info!(%addr, "simulator started");
        sim.wait(stop_signal()).await;
        tracing::info!("simulator stopped");
        ExitCode::SUCCESS
    })
}

/// Starts the simulator's FIX acceptor as the flags say; returns its address as a `fix_addr`.
async fn start_sim_fix(sim: &Simulator, args: &SimArgs) -> Result<Option<String>, String> {
    let explicit = args.fix_listen.is_some();
    let text = args.fix_listen.as_deref().unwrap_or(SIM_FIX_DEFAULT);
    if text == "off" {
        return Ok(None);
    }
    let at: SocketAddr = text.parse().map_err(|_| {
        format!("--fix-listen {text:?} is not an address like {SIM_FIX_DEFAULT} (or \"off\")")
    })?;
    let tls = match (&args.fix_tls_cert, &args.fix_tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            Some(sim::fix::tls_acceptor(&read(cert)?, &read(key)?)?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "tls" } else { "tcp" };
    let listener = match tokio::net::TcpListener::bind(at).await {
        Ok(l) => l,
        Err(e) if !explicit => {
            eprintln!(
                "kalshi-riskd sim: no FIX acceptor: cannot listen on {at}: {e} (pass --fix-listen)"
            );
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot listen for FIX on {at}: {e}")),
    };
    let bound = sim.start_fix(listener, tls).map_err(|e| e.to_string())?;
    Ok(Some(format!("{scheme}://{bound}")))
}

fn sim_config(args: &SimArgs) -> Result<SimConfig, String> {
    if args.api_key_ids.len() != args.public_keys.len() {
        return Err(format!(
            "{} --api-key-id but {} --public-key: give them in pairs",
            args.api_key_ids.len(),
            args.public_keys.len()
        ));
    }
    let mut keys = KeyRegistry::default();
    for (id, path) in args.api_key_ids.iter().zip(&args.public_keys) {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read public key {}: {e}", path.display()))?;
        let der = auth::public_key_der_from_pem(&pem, &path.display().to_string())
            .map_err(|e| e.to_string())?;
        keys.register(id, &der)?;
    }
    if keys.is_empty() {
        let (id, path) = throwaway_key(args.key_dir.as_deref(), &mut keys)?;
        println!("no --api-key-id given: generated a throwaway key for this run");
        println!("  api key id   {id}");
        println!("  private key  {}", path.display());
    }
    let faults = Faults {
        error_rate: args.error_rate,
        error_path: args.error_path.clone(),
        error_after_apply: args.error_after_apply,
        burst_429: args.burst_429,
        error_burst: 0,
        latency_ms: args.latency.map_or(0, |d| d.as_millis() as u64),
        ws_silent: args.ws_silent,
        fix_silent: args.fix_silent,
        ..Faults::default()
    };
    faults.validate()?;
    Ok(SimConfig {
        tier: args.tier,
        keys,
        ping_interval: args.ping_interval,
        engine: sim::EngineConfig {
            max_groups: args.max_groups,
            boundary: if args.trigger_at_limit {
                TriggerBoundary::Reaches
            } else {
                TriggerBoundary::Exceeds
            },
            ..Default::default()
        },
        faults,
        ws_drop_every: args.ws_drop_every,
    })
}

/// Generates a key pair, registers its public half and writes the private half (mode 0600).
fn throwaway_key(dir: Option<&Path>, keys: &mut KeyRegistry) -> Result<(String, PathBuf), String> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let key = generate_key().map_err(|e| e.to_string())?;
    let id = sim::engine::new_id();
    let der = auth::public_key_der_from_pem(key.public_pem.as_bytes(), "generated")
        .map_err(|e| e.to_string())?;
    keys.register(&id, &der)?;
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => std::env::temp_dir().join(format!("kalshi-riskd-sim-{}", std::process::id())),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("key.pem");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(key.private_pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::fs::write(dir.join("key.id"), format!("{id}\n"))
        .map_err(|e| format!("cannot write {}: {e}", dir.join("key.id").display()))?;
    Ok((id, path))
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
