//! The daemon's configuration and its policy files: load, layer, validate.
//!
//! Layers: built-in defaults, then the file, then `KALSHI_RISKD__SECTION__KEY` environment
//! variables. Unknown keys are errors. Everything wrong with the config file and every policy
//! file is reported together, each error naming the file, the line and the key; nothing is
//! half-applied. A reload validates the same way before anything changes.

pub mod policy;
pub mod source;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use policy::{Policy, RetireAction};
pub use source::{ConfigError, ConfigErrors};

use crate::risk::policy::{KillScope, RiskConfig};
use crate::risk::{Contracts, LimitSpec, Ratio};
use source::{Reader, Source};

/// `stream.blind_after` bounds: under a second, ordinary network jitter would read as blind;
/// over an hour, a dead stream would go unnoticed for too long to be called guarded.
pub const MIN_BLIND_AFTER: Duration = Duration::from_secs(1);
pub const MAX_BLIND_AFTER: Duration = Duration::from_secs(3_600);

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "KALSHI_RISKD";
/// Where the config lives unless `--config` or `$KALSHI_RISKD_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/kalshi-riskd/kalshi-riskd.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Prod,
    Demo,
    Sim,
}

impl Environment {
    /// `(REST base, WebSocket URL)` of the environment.
    pub fn urls(self) -> (&'static str, &'static str) {
        match self {
            Environment::Prod => (
                "https://external-api.kalshi.com/trade-api/v2",
                "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
            ),
            Environment::Demo => (
                "https://external-api.demo.kalshi.co/trade-api/v2",
                "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
            ),
            Environment::Sim => (
                "http://127.0.0.1:8280/trade-api/v2",
                "ws://127.0.0.1:8280/trade-api/ws/v2",
            ),
        }
    }

    /// The FIX order-entry acceptor (the exchange's KalshiNR session on port 8228, over TLS;
    /// the simulator's acceptor is plain TCP).
    pub fn fix_addr(self) -> &'static str {
        match self {
            Environment::Prod => "tls://mm.fix.elections.kalshi.com:8228",
            Environment::Demo => "tls://fix.demo.kalshi.co:8228",
            Environment::Sim => "tcp://127.0.0.1:8228",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Demo => "demo",
            Environment::Sim => "sim",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The channel for order-group actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Rest,
    /// A FIX session; reads stay on REST.
    Fix,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeConfig {
    pub environment: Environment,
    pub rest_url: String,
    pub ws_url: String,
    /// Where the FIX acceptor is (used when `control` is FIX).
    pub fix_addr: crate::kalshi::fix::FixAddr,
    pub control: Control,
    pub api_key_id: String,
    pub private_key_path: PathBuf,
    pub write_budget_per_s: f64,
    pub trigger_reserve: f64,
}

/// The daemon config file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub file: PathBuf,
    pub exchange: ExchangeConfig,
    pub policies_dir: PathBuf,
    pub account_limit: Option<LimitSpec>,
    pub kill_scope: KillScope,
    pub kill_hold: bool,
    pub blind_after: Duration,
    pub http_listen: SocketAddr,
    pub admin_socket: PathBuf,
    pub state_dir: PathBuf,
    /// Every counted fill also goes to `audit.jsonl` (the history `replay --audit` reads).
    pub audit_fills: bool,
    pub log_format: LogFormat,
    /// Cluster mode (`[cluster]`): `None` alone on the host.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: the daemons of one account on several hosts, sharing a kill latch in etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// The cluster: one per Kalshi account; every member of it uses the same name.
    pub name: String,
    /// This member's name, unique in the cluster (the host name by default).
    pub member: String,
    /// How long this member stays registered after it stops renewing (its lease).
    pub lease_ttl: Duration,
}

pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(60);

/// Names in etcd keys: letters, digits, `.`, `_` and `-`, at most 64.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn read_cluster(r: &mut Reader<'_>) -> Option<ClusterConfig> {
    if !r.table("cluster") {
        return None;
    }
    if !cfg!(feature = "cluster") {
        r.fail(
            "cluster",
            "this build has no cluster mode: build with the `cluster` feature (the Debian package has it)",
        );
    }
    let endpoints = r.string_array("cluster.endpoints").unwrap_or_default();
    if endpoints.is_empty() && !r.has("cluster.endpoints") {
        r.fail(
            "cluster.endpoints",
            "is required with [cluster]: etcd's client URLs, like [\"http://10.0.0.5:2379\"]",
        );
    }
    for (i, e) in endpoints.iter().enumerate() {
        if !e.starts_with("http://") && !e.starts_with("https://") {
            r.fail(
                &format!("cluster.endpoints[{i}]"),
                format!("{e:?} must start with http:// or https://"),
            );
        }
    }
    let name = r.required_string("cluster.name").unwrap_or_default();
    if !name.is_empty() && !valid_name(&name) {
        r.fail(
            "cluster.name",
            format!("{name:?}: use letters, digits, '.', '_' and '-' (at most 64)"),
        );
    }
    let member = r.string("cluster.member").unwrap_or_else(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    });
    if !valid_name(&member) {
        r.fail(
            "cluster.member",
            format!("{member:?}: use letters, digits, '.', '_' and '-' (at most 64)"),
        );
    }
    let lease_ttl = r
        .bounded_duration(
            "cluster.lease_ttl",
            "cluster.lease_ttl",
            MIN_LEASE_TTL,
            MAX_LEASE_TTL,
        )
        .unwrap_or(Duration::from_secs(5));
    Some(ClusterConfig {
        endpoints,
        name,
        member,
        lease_ttl,
    })
}

/// The config file and every enabled policy, all valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub daemon: DaemonConfig,
    /// Every policy file, enabled or not, in strategy-name order.
    pub policies: Vec<Policy>,
}

impl Loaded {
    pub fn enabled(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().filter(|p| p.enabled)
    }

    /// The longest window any enabled policy or the account limit uses, in ms (at least the
    /// exchange's 15 s): how far back a start rebuilds windows from the exchange's fills.
    pub fn longest_window_ms(&self) -> i64 {
        self.enabled()
            .flat_map(|p| p.risk.limits.iter().map(|l| l.window_ms))
            .chain(self.daemon.account_limit.iter().map(|l| l.window_ms))
            .fold(crate::risk::guard::EXCHANGE_WINDOW_MS, i64::max)
    }

    /// What the risk core enforces.
    pub fn risk_config(&self) -> RiskConfig {
        RiskConfig {
            strategies: self.enabled().map(|p| p.risk.clone()).collect(),
            account_limit: self.daemon.account_limit.clone(),
            kill_scope: self.daemon.kill_scope,
            kill_hold: self.daemon.kill_hold,
            blind_after_ms: self.daemon.blind_after.as_millis() as i64,
            cluster: self.daemon.cluster.is_some(),
            audit_fills: self.daemon.audit_fills,
        }
    }
}

/// Resolves a configured path: relative paths are relative to the config file's directory.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// Checks a config file's text alone (no environment overrides, no policy files): the config,
/// or every error in it at once. Nothing is read from disk.
pub fn parse_daemon(path: &Path, text: &str) -> Result<DaemonConfig, ConfigErrors> {
    let src = Source::parse(path, text).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    match read_daemon(&src, &mut errors) {
        Some(d) if errors.is_empty() => Ok(d),
        _ => Err(ConfigErrors(errors)),
    }
}

fn read_daemon(src: &Source, errors: &mut Vec<ConfigError>) -> Option<DaemonConfig> {
    let mut r = Reader::new(src);
    let path = src.path.clone();

    r.table("exchange");
    let environment = match r.string("exchange.environment").as_deref() {
        Some("prod") => Some(Environment::Prod),
        Some("demo") => Some(Environment::Demo),
        Some("sim") => Some(Environment::Sim),
        Some(other) => {
            r.fail(
                "exchange.environment",
                format!("{other:?} is not one of prod, demo, sim"),
            );
            None
        }
        None => {
            if !r.has("exchange.environment") {
                r.fail(
                    "exchange.environment",
                    "is required: \"prod\", \"demo\" or \"sim\"",
                );
            }
            None
        }
    };
    let (rest_default, ws_default) = environment.unwrap_or(Environment::Demo).urls();
    let rest_url = r
        .string("exchange.rest_url")
        .unwrap_or_else(|| rest_default.to_owned());
    let ws_url = r
        .string("exchange.ws_url")
        .unwrap_or_else(|| ws_default.to_owned());
    for (key, url, schemes) in [
        ("exchange.rest_url", &rest_url, ["http://", "https://"]),
        ("exchange.ws_url", &ws_url, ["ws://", "wss://"]),
    ] {
        if !schemes.iter().any(|s| url.starts_with(s)) {
            r.fail(
                key,
                format!("{url:?} must start with {} or {}", schemes[0], schemes[1]),
            );
        }
    }
    let fix_default = environment.unwrap_or(Environment::Demo).fix_addr();
    let fix_text = r
        .string("exchange.fix_addr")
        .unwrap_or_else(|| fix_default.to_owned());
    let fix_addr = match crate::kalshi::fix::FixAddr::parse(&fix_text) {
        Ok(a) => a,
        Err(e) => {
            r.fail(
                "exchange.fix_addr",
                format!("{e}; expected tls://host:port (or tcp://host:port for a local stunnel or the simulator)"),
            );
            crate::kalshi::fix::FixAddr::parse(fix_default).expect("built-in FIX address")
        }
    };
    let api_key_id = r.required_string("exchange.api_key_id").unwrap_or_default();
    if is_placeholder_key_id(&api_key_id) {
        r.fail(
            "exchange.api_key_id",
            format!("{api_key_id:?} is the example's placeholder, not a key: set the id of the API key the private key belongs to"),
        );
    }
    let private_key_path = resolve(
        &path,
        &r.string("exchange.private_key_path")
            .unwrap_or_else(|| "/etc/kalshi-riskd/key.pem".into()),
    );
    let control = match r
        .choice("exchange.control", &["rest", "fix"], "rest")
        .as_str()
    {
        "fix" => Control::Fix,
        _ => Control::Rest,
    };
    let write_budget_per_s = r
        .number("exchange.write_budget_per_s", 0.1..=100_000.0)
        .unwrap_or(10.0);
    let trigger_reserve = r
        .number("exchange.trigger_reserve", 0.0..=0.9)
        .unwrap_or(0.5);

    r.table("policies");
    let policies_dir = resolve(
        &path,
        &r.string("policies.dir")
            .unwrap_or_else(|| "/etc/kalshi-riskd/policies".into()),
    );

    let account_limit = if r.table("account") {
        let max = r.int("account.max_contracts", 1..=i64::MAX / 1_000);
        if max.is_none() && !r.has("account.max_contracts") {
            r.fail(
                "account.max_contracts",
                "is required when [account] is present",
            );
        }
        let window = r
            .bounded_duration(
                "account.window",
                "a window",
                policy::MIN_WINDOW,
                policy::MAX_WINDOW,
            )
            .unwrap_or(Duration::from_secs(15));
        max.map(|m| LimitSpec {
            name: "account".into(),
            window_ms: window.as_millis() as i64,
            max_contracts: Some(Contracts::from_whole(m)),
            max_notional: None,
            max_fills: None,
            warn_ratio: Ratio::from_ppm(800_000),
        })
    } else {
        None
    };

    r.table("kill");
    let kill_scope = match r
        .choice("kill.scope", &["account", "managed"], "account")
        .as_str()
    {
        "managed" => KillScope::Managed,
        _ => KillScope::Account,
    };
    let kill_hold = r.boolean("kill.hold").unwrap_or(true);

    r.table("stream");
    let blind_after = r
        .bounded_duration(
            "stream.blind_after",
            "stream.blind_after",
            MIN_BLIND_AFTER,
            MAX_BLIND_AFTER,
        )
        .unwrap_or(Duration::from_secs(10));

    r.table("http");
    let listen_text = r
        .string("http.listen")
        .unwrap_or_else(|| "127.0.0.1:9469".into());
    let http_listen = match listen_text.parse() {
        Ok(a) => a,
        Err(_) => {
            r.fail(
                "http.listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:9469"),
            );
            SocketAddr::from(([127, 0, 0, 1], 9469))
        }
    };
    let admin_socket = resolve(
        &path,
        &r.string("http.admin_socket")
            .unwrap_or_else(|| "/run/kalshi-riskd/admin.sock".into()),
    );

    r.table("state");
    let state_dir = resolve(
        &path,
        &r.string("state.dir")
            .unwrap_or_else(|| "/var/lib/kalshi-riskd".into()),
    );
    let audit_fills = r.boolean("state.audit_fills").unwrap_or(false);

    let cluster = read_cluster(&mut r);

    r.table("log");
    let log_format = match r.choice("log.format", &["json", "pretty"], "json").as_str() {
        "pretty" => LogFormat::Pretty,
        _ => LogFormat::Json,
    };

    let found = r.finish();
    let ok = found.is_empty();
    errors.extend(found);
    ok.then(|| DaemonConfig {
        file: path,
        exchange: ExchangeConfig {
            environment: environment.unwrap_or(Environment::Demo),
            rest_url,
            ws_url,
            fix_addr,
            control,
            api_key_id,
            private_key_path,
            write_budget_per_s,
            trigger_reserve,
        },
        policies_dir,
        account_limit,
        kill_scope,
        kill_hold,
        blind_after,
        http_listen,
        admin_socket,
        state_dir,
        audit_fills,
        log_format,
        cluster,
    })
}

/// Loads and validates the config file, its environment overrides and every policy file in
/// its policy directory. `env` is the process environment (injected, so tests never touch it).
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut src = Source::read(path).map_err(|e| ConfigErrors(vec![e]))?;
    src.overlay_env(ENV_PREFIX, env);
    let daemon = read_daemon(&src, &mut errors);
    // The policies are checked even when the config file has errors: every error at once.
    let policies_dir = match &daemon {
        Some(d) => d.policies_dir.clone(),
        None => resolve(
            path,
            src.table
                .get("policies")
                .and_then(|p| p.get("dir"))
                .and_then(|d| d.as_str())
                .unwrap_or("/etc/kalshi-riskd/policies"),
        ),
    };
    let mut policies = Vec::new();
    {
        match std::fs::read_dir(&policies_dir) {
            Err(e) => errors.push(src.error(
                "policies.dir",
                format!("cannot read {}: {e}", policies_dir.display()),
            )),
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    if let Some(p) = policy::read_policy(&f, &mut errors) {
                        policies.push(p);
                    }
                }
            }
        }
        let mut names: Vec<(&str, &Path)> = Vec::new();
        for p in &policies {
            if let Some((_, other)) = names.iter().find(|(n, _)| *n == p.risk.name) {
                errors.push(ConfigError {
                    origin: p.file.display().to_string(),
                    line: None,
                    key: "strategy".into(),
                    message: format!(
                        "{:?} is also the strategy of {}",
                        p.risk.name,
                        other.display()
                    ),
                });
            }
            names.push((&p.risk.name, &p.file));
        }
    }
    match daemon {
        Some(daemon) if errors.is_empty() => {
            policies.sort_by(|a, b| a.risk.name.cmp(&b.risk.name));
            Ok(Loaded { daemon, policies })
        }
        _ => Err(ConfigErrors(errors)),
    }
}

/// The example config's key id (all zeros): shipped so the file parses, never a real key.
fn is_placeholder_key_id(id: &str) -> bool {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    hex.len() == 32
        && hex
            .char_indices()
            .all(|(i, c)| c == '0' || (i == 12 && c == '4') || (i == 16 && c == '8'))
}
