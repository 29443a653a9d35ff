//! The command line: clap definitions and dispatch.
//!
//! Commands arrive as their issues land; a command that is not built yet is absent, not a stub.
//! Exit codes: 0 on a clean stop, 1 on a fatal error, 2 on bad arguments or configuration.
//! The admin commands (`status`, `kill`, `release`, `reset`) say how they ended: 0 done,
//! 1 refused by the daemon, 2 bad configuration, 3 no daemon listening, 4 permission denied,
//! 5 no answer within `--timeout`, and for `status` 6 when it answered but the kill switch is
//! engaged or a strategy is tripped or unknown. `kill --direct` (break-glass, without the
//! daemon): 0 every group triggered and the kill recorded, 1 anything less (each named), 2 bad
//! configuration or key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::admin::{AdminClient, ClientError, ClientErrorKind};
use crate::kalshi::auth;

mod direct;
mod replay;
#[cfg(feature = "sim")]
mod sim;
#[cfg(feature = "sim")]
pub use sim::{SIM_FIX_DEFAULT, SimArgs};

/// The version and the git revision the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KALSHI_RISKD_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "kalshi-riskd",
    version = VERSION,
    about = "Risk daemon for Kalshi order groups"
)]
pub struct Cli {
    /// The daemon config file.
    #[arg(short = 'c', long, global = true, env = "KALSHI_RISKD_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The admin socket for the admin commands (instead of the config's `http.admin_socket`).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// How long the admin commands wait for the daemon's answer.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes of the admin commands.
pub mod exit {
    pub const REFUSED: u8 = 1;
    pub const BAD_CONFIG: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const DENIED: u8 = 4;
    pub const TIMED_OUT: u8 = 5;
    /// `status`: answered, and the kill switch is engaged or a strategy is tripped or unknown.
    pub const ATTENTION: u8 = 6;
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd runs this).
    Run,
    /// Load and validate the config and every policy; print one line per strategy.
    Check,
    #[cfg(feature = "sim")]
    /// The embedded default: a simulated exchange, the daemon, a calm and a runaway strategy, a
    /// breach trip and the kill switch, then a summary.
    Demo {
        /// How long the demo runs (the kill switch is pulled at 60 % of it).
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Ask the running daemon for each strategy's state, window use and groups.
    Status {
        /// Print the daemon's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Engage the kill switch (same as SIGUSR1).
    Kill {
        /// Break-glass, for when the daemon is down: trigger every group on the account straight
        /// through the exchange with the daemon's key, then record the kill latch (through the
        /// daemon if it answers, else in its state.json and audit.jsonl).
        #[arg(long)]
        direct: bool,
    },
    /// Release the kill latch (groups stay triggered until reset).
    Release,
    /// Reset a strategy's groups through the daemon (refused while the kill switch is engaged).
    Reset {
        /// The strategy to reset.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        strategy: Option<String>,
        /// Reset every strategy.
        #[arg(long)]
        all: bool,
    },
    /// List the account's order groups straight from the exchange.
    Groups,
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// Replace the running daemon's log filter (RUST_LOG syntax: `debug`,
    /// `info,riskd_kalshi=debug`), until the next restart.
    LogLevel {
        /// The new filter.
        filter: String,
    },
    /// Run policies over a history of fills through the daemon's risk core: every trip, warn
    /// crossing and reset it would have made, each limit's peak and percentiles, suggested
    /// limits, and a plot per strategy.
    Replay(Box<replay::ReplayArgs>),
    #[cfg(feature = "sim")]
    /// Run the exchange simulator standalone (REST, WebSocket and the /_sim/ control surface).
    Sim(Box<SimArgs>),
}

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> ExitCode {
    let target = AdminTarget {
        config: cli.config.clone(),
        socket: cli.socket.clone(),
        timeout: cli.timeout,
    };
    match cli.command {
        Command::Run => run_daemon(&cli.config),
        Command::Status { json } => admin_command(&target, AdminCmd::Status { json }),
        Command::Kill { direct: true } => direct::run(&cli.config, cli.socket.as_deref()),
        Command::Kill { direct: false } => admin_command(&target, AdminCmd::Kill),
        Command::Release => admin_command(&target, AdminCmd::Release),
        Command::Reset { strategy, all } => admin_command(
            &target,
            AdminCmd::Reset {
                strategy: if all { None } else { strategy },
            },
        ),
        Command::Groups => run_groups(&cli.config),
        Command::Replay(args) => replay::run(&cli.config, &args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kalshi-riskd", &mut text);
            print_out("completions", &text)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut text) {
                Ok(()) => print_out("man", &text),
                Err(e) => {
                    eprintln!("kalshi-riskd man: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::LogLevel { filter } => admin_command(&target, AdminCmd::LogLevel { filter }),
        #[cfg(feature = "sim")]
        Command::Demo { duration } => crate::demo::run(duration),
        Command::Check => {
            init_logging(crate::config::LogFormat::Pretty);
            run_check(&cli.config)
        }
        #[cfg(feature = "sim")]
        Command::Sim(args) => {
            init_logging(crate::config::LogFormat::Pretty);
            sim::run(*args)
        }
    }
}

/// Writes generated text to stdout; a closed pipe or a full disk is an error, not a panic.
fn print_out(cmd: &str, text: &[u8]) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kalshi-riskd {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Starts logging (see [`crate::logging`]).
pub fn init_logging(format: crate::config::LogFormat) {
    crate::logging::init(format);
}

fn run_daemon(path: &Path) -> ExitCode {
    let (loaded, signer, rt) = match prepare(path, "run") {
        Ok(p) => p,
        Err(code) => return code,
    };
    init_logging(loaded.daemon.log_format);
    // The daemon runs as a task on a worker thread, not on this thread's `block_on`: a task it
    // spawns (a Trigger) then waits in that worker's next slot for the loop to yield, instead
    // of waking another thread (tens of microseconds on a fill's path).
    let path = path.to_owned();
    let daemon = rt.block_on(async move {
        tokio::spawn(async move {
            crate::daemon::run(
                &path,
                loaded,
                signer,
                tokio_util::sync::CancellationToken::new(),
            )
            .await
        })
        .await
    });
    match daemon {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal: the daemon's task ended abnormally");
            eprintln!("kalshi-riskd run: {e}");
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("kalshi-riskd run: {e}");
            ExitCode::from(1)
        }
    }
}

enum AdminCmd {
    Status { json: bool },
    Kill,
    Release,
    Reset { strategy: Option<String> },
    LogLevel { filter: String },
}

/// The admin socket's path from the config file (only `http.admin_socket` is needed, so a
/// policy problem does not stop an operator from reaching the daemon).
fn admin_socket(path: &Path) -> Result<PathBuf, String> {
    match load_config(path) {
        Ok(l) => Ok(l.daemon.admin_socket),
        Err(e) => {
            let src = crate::config::source::Source::read(path).map_err(|e| e.to_string())?;
            let sock = src
                .table
                .get("http")
                .and_then(|h| h.get("admin_socket"))
                .and_then(|v| v.as_str())
                .unwrap_or("/run/kalshi-riskd/admin.sock");
            let p = PathBuf::from(sock);
            let _ = e;
            Ok(if p.is_absolute() {
                p
            } else {
                path.parent().unwrap_or(Path::new(".")).join(p)
            })
        }
    }
}

/// Where the admin commands go, and how long they wait.
struct AdminTarget {
    config: PathBuf,
    socket: Option<PathBuf>,
    timeout: Duration,
}

fn admin_command(cli: &AdminTarget, cmd: AdminCmd) -> ExitCode {
    let timeout = cli.timeout;
    let socket = match &cli.socket {
        Some(s) => s.clone(),
        None => match admin_socket(&cli.config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kalshi-riskd: {e}");
                return ExitCode::from(exit::BAD_CONFIG);
            }
        },
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kalshi-riskd: {e}");
            return ExitCode::from(1);
        }
    };
    let client = AdminClient::new(socket, timeout);
    rt.block_on(async move {
        match admin_call(&client, &cmd).await {
            Err(e) => {
                match e.kind {
                    ClientErrorKind::Refused(status) => {
                        eprintln!("kalshi-riskd: refused ({status}): {e}")
                    }
                    _ => eprintln!("kalshi-riskd: {e}"),
                }
                ExitCode::from(match e.kind {
                    ClientErrorKind::Refused(_) => exit::REFUSED,
                    ClientErrorKind::Unreachable | ClientErrorKind::Failed => exit::UNREACHABLE,
                    ClientErrorKind::Denied => exit::DENIED,
                    ClientErrorKind::TimedOut => exit::TIMED_OUT,
                })
            }
            // `status` says in its exit code whether anything needs an operator.
            Ok(true) => ExitCode::from(exit::ATTENTION),
            Ok(false) => ExitCode::SUCCESS,
        }
    })
}

/// Makes one admin command's calls and prints what they answered; true when `status` found
/// something that needs an operator.
async fn admin_call(client: &AdminClient, cmd: &AdminCmd) -> Result<bool, ClientError> {
    match cmd {
        AdminCmd::Status { json } => {
            let status = client.status().await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", crate::admin::status_table(&status));
            }
            return Ok(status.needs_attention());
        }
        AdminCmd::Kill => {
            client.kill().await?;
            println!("kill switch engaged; every group in scope is being triggered");
        }
        AdminCmd::LogLevel { filter } => {
            let set = client.log_filter(filter).await?;
            println!("log filter now {}", set.log_filter);
        }
        AdminCmd::Release => {
            if client.release().await?.released {
                println!("kill switch released; groups stay triggered until reset");
            } else {
                println!("the kill switch was not engaged");
            }
        }
        AdminCmd::Reset {
            strategy: Some(name),
        } => {
            client.reset(name).await?;
            println!("{name}: reset; its groups accept orders again");
        }
        AdminCmd::Reset { strategy: None } => {
            // Every strategy, one request each; the first refusal stops it.
            let status = client.status().await?;
            for s in &status.strategies {
                client.reset(&s.name).await?;
            }
            println!("{} strategies reset", status.strategies.len());
        }
    }
    Ok(false)
}

/// `groups`: the account's order groups straight from the exchange.
fn run_groups(path: &Path) -> ExitCode {
    let (loaded, signer, rt) = match prepare(path, "groups") {
        Ok(p) => p,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let mut cfg = crate::kalshi::RestConfig::new(loaded.daemon.exchange.rest_url.clone());
        cfg.write_per_s = Some(loaded.daemon.exchange.write_budget_per_s);
        let api = match crate::kalshi::RestClient::new(&cfg, signer) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kalshi-riskd groups: {e}");
                return ExitCode::from(2);
            }
        };
        let groups = match api.list_account_groups().await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("kalshi-riskd groups: {e}");
                return ExitCode::from(1);
            }
        };
        let state: Option<crate::daemon::store::StateFile> =
            std::fs::read(loaded.daemon.state_dir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        let owner = |id: &crate::kalshi::GroupId| {
            state.as_ref().and_then(|s| {
                s.snapshot
                    .strategies
                    .iter()
                    .find(|(_, st)| st.groups.iter().any(|g| &g.id == id))
                    .map(|(n, _)| n.clone())
            })
        };
        println!(
            "{:<38} {:>10} {:>14} {:>12}  MANAGED BY",
            "GROUP", "SUBACCOUNT", "EXCHANGE INDEX", "LIMIT"
        );
        for (addr, limit) in &groups {
            println!(
                "{:<38} {:>10} {:>14} {:>12}  {}",
                addr.id.as_str(),
                addr.subaccount,
                addr.exchange_index,
                limit.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                owner(&addr.id).unwrap_or_else(|| "-".into())
            );
        }
        println!(
            "{} group(s); the exchange does not say which are triggered (the daemon's status does)",
            groups.len()
        );
        ExitCode::SUCCESS
    })
}

/// What a command that talks to the exchange needs: the validated config, the signing key
/// (`$CREDENTIALS_DIRECTORY/kalshi-key` under systemd) and a runtime. On failure it says why,
/// naming `cmd`, and returns the exit code: 2 for a bad config or key, 1 otherwise.
fn prepare(
    path: &Path,
    cmd: &str,
) -> Result<
    (
        crate::config::Loaded,
        crate::kalshi::Signer,
        tokio::runtime::Runtime,
    ),
    ExitCode,
> {
    let loaded = load_config(path).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        eprintln!("kalshi-riskd {cmd}: invalid configuration");
        ExitCode::from(2)
    })?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let signer = auth::load_signer(
        &loaded.daemon.exchange.api_key_id,
        &loaded.daemon.exchange.private_key_path,
        credentials.as_deref(),
    )
    .map_err(|e| {
        eprintln!("kalshi-riskd {cmd}: {e}");
        ExitCode::from(2)
    })?;
    let rt = runtime().map_err(|e| {
        eprintln!("kalshi-riskd {cmd}: cannot start the runtime: {e}");
        ExitCode::from(1)
    })?;
    Ok((loaded, signer, rt))
}

/// Loads the config with the process environment's overrides.
fn load_config(path: &Path) -> Result<crate::config::Loaded, crate::config::ConfigErrors> {
    crate::config::load(path, std::env::vars())
}

fn run_check(path: &Path) -> ExitCode {
    match load_config(path) {
        Ok(loaded) => {
            print!("{}", describe(&loaded));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "kalshi-riskd check: {} error{} in the configuration; nothing was loaded",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(2)
        }
    }
}

/// `check`'s report: the config, then one line per strategy.
pub fn describe(loaded: &crate::config::Loaded) -> String {
    use crate::risk::policy::{BlindAction, LostAction, Mode, ResetPolicy};
    let d = &loaded.daemon;
    let mut out = format!(
        "config {}: environment {}, REST {}, {} strateg{} ({} enabled)\n",
        d.file.display(),
        d.exchange.environment.as_str(),
        d.exchange.rest_url,
        loaded.policies.len(),
        if loaded.policies.len() == 1 {
            "y"
        } else {
            "ies"
        },
        loaded.enabled().count(),
    );
    if let Some(c) = &d.cluster {
        out.push_str(&format!(
            "cluster {} as member {}: etcd {}, lease {}\n",
            c.name,
            c.member,
            c.endpoints.join(", "),
            humantime::format_duration(c.lease_ttl)
        ));
    }
    for p in &loaded.policies {
        let r = &p.risk;
        let limits: Vec<String> = r
            .limits
            .iter()
            .map(|l| {
                let mut parts = Vec::new();
                if let Some(c) = l.max_contracts {
                    parts.push(format!("{} contracts", c.whole().unwrap_or(0)));
                }
                if let Some(n) = l.max_notional {
                    parts.push(format!("${}", n.to_string_with(2)));
                }
                if let Some(f) = l.max_fills {
                    parts.push(format!("{f} fills"));
                }
                let window = humantime::format_duration(Duration::from_millis(l.window_ms as u64));
                format!("{} {} per {window}", l.name, parts.join(" + "))
            })
            .collect();
        let reset = match &r.reset {
            ResetPolicy::Manual => "manual".to_owned(),
            ResetPolicy::Cooldown {
                cooldown_ms,
                resume_ratio,
                max_auto_resets,
            } => format!(
                "cooldown {} below {}% (at most {max_auto_resets}/day)",
                humantime::format_duration(Duration::from_millis(*cooldown_ms as u64)),
                resume_ratio.ppm() / 10_000
            ),
        };
        out.push_str(&format!(
            "{}: {}{}, subaccount {}, exchange {:?}, group limit {}, limits [{}], reset {reset}, blind {}, retire {}{}\n",
            r.name,
            if p.enabled { "" } else { "DISABLED, " },
            match r.mode { Mode::Enforce => "enforce", Mode::Shadow => "shadow" },
            p.subaccount,
            p.exchange_indexes,
            r.group_limit.whole().unwrap_or(0),
            limits.join("; "),
            match r.blind { BlindAction::Alert => "alert", BlindAction::Trigger => "trigger" },
            format!("{:?}", p.retire).to_lowercase(),
            match (&d.cluster, r.owner_lost) {
                (None, _) => "",
                (Some(_), LostAction::Trigger) => ", if its member is lost: trigger",
                (Some(_), LostAction::Guard) => ", if its member is lost: guard",
            },
        ));
    }
    out
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
