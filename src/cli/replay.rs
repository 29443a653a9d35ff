//! `kalshi-riskd replay`: policies over a history of fills, through the daemon's risk core.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::policy::Policy;
use crate::kalshi::{GroupAddress, GroupId};
use crate::replay::history::{self, History, HistoryFill, Mapping, Skipped};
use crate::replay::run::{Setup, with_made_up_groups};
use crate::risk::policy::RiskConfig;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A policy file to replay (repeat for several). Without any, the config's enabled policies
    /// and its account limit.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// The history: fills in the exchange's REST shape (`GET /portfolio/fills` pages, an array
    /// of fills, or one per line).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["from_exchange", "audit"]
    )]
    pub fills: Option<PathBuf>,
    /// The history: the fills the daemon recorded in its audit log (with `state.audit_fills =
    /// true`), each counted against the strategy the daemon counted it against. Repeat for
    /// rotated logs (uncompressed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["fills", "from_exchange"])]
    pub audit: Vec<PathBuf>,
    /// The history: the account's fills read from the exchange with the config's key (within
    /// the read budget), and its orders for their groups.
    #[arg(long, conflicts_with = "fills")]
    pub from_exchange: bool,
    /// How far back `--from-exchange` reads.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Orders in the exchange's REST shape (`GET /portfolio/orders`), for the groups of the
    /// fills in `--fills`.
    #[arg(long, value_name = "FILE", requires = "fills")]
    pub orders: Option<PathBuf>,
    /// The daemon's state.json, for each strategy's groups (default: the config's, if there).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Where report.json, report.txt and an SVG and a PNG per strategy are written.
    #[arg(long, value_name = "DIR", default_value = "replay")]
    pub out: PathBuf,
    /// The percentiles of busy windows to report, and to suggest limits at.
    #[arg(long, value_delimiter = ',', default_value = "50,90,99,99.9")]
    pub percentiles: Vec<f64>,
    /// List fills that cannot be read and replay the rest, instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
}

/// What the replay runs: the risk config, each strategy's subaccount, where `state.json` is.
struct Policies {
    risk: RiskConfig,
    subaccounts: HashMap<String, u8>,
    state: Option<PathBuf>,
}

fn bad(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("kalshi-riskd replay: {msg}");
    ExitCode::from(2)
}

pub fn run(config: &Path, args: &ReplayArgs) -> ExitCode {
    if let Some(p) = args
        .percentiles
        .iter()
        .find(|p| !(0.0..=100.0).contains(*p))
    {
        return bad(format!("--percentiles: {p} is not between 0 and 100"));
    }
    let policies = match policies(config, &args.policies) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if policies.risk.strategies.is_empty() {
        return bad("no enabled policy to replay");
    }
    let state = args.state.clone().or(policies.state.clone());
    let known = match state.as_deref().map(read_state).transpose() {
        Ok(k) => k.unwrap_or_default(),
        Err(e) => return bad(e),
    };
    let (history, orders) = if !args.audit.is_empty() {
        match history::read_audit_files(&args.audit, args.skip_bad) {
            Ok(h) => (h, HashMap::new()),
            Err(e) => return bad(e),
        }
    } else if args.from_exchange {
        match from_exchange(config, args.since) {
            Ok(h) => h,
            Err(code) => return code,
        }
    } else {
        let Some(path) = &args.fills else {
            return bad("give --fills FILE or --from-exchange");
        };
        let history = match history::read_rest_file(path, args.skip_bad) {
            Ok(h) => h,
            Err(e) => return bad(e),
        };
        let orders = match args.orders.as_deref().map(history::read_orders_file) {
            Some(Ok(o)) => o,
            Some(Err(e)) => return bad(e),
            None => HashMap::new(),
        };
        (history, orders)
    };
    let mut mapping = Mapping {
        orders,
        ..Mapping::default()
    };
    for (name, groups) in &known {
        for g in groups {
            mapping.groups.insert(g.id.clone(), name.clone());
        }
    }
    for s in &policies.risk.strategies {
        mapping.strategies.insert(s.name.clone());
        let sub = policies.subaccounts.get(&s.name).copied().unwrap_or(0);
        mapping
            .subaccounts
            .entry(sub)
            .or_default()
            .push(s.name.clone());
    }
    let groups = with_made_up_groups(&policies.risk, &policies.subaccounts, &known);
    let setup = Setup {
        risk: policies.risk,
        groups,
        mapping,
    };
    let report = crate::replay::replay(&setup, &history, &args.percentiles);
    let text = report.to_text();
    print!("{text}");
    if let Err(e) = write_out(&args.out, &report, &text, &setup) {
        eprintln!("kalshi-riskd replay: {e}");
        return ExitCode::from(1);
    }
    println!(
        "\nWritten to {}: report.json, report.txt, and an SVG and a PNG per strategy.",
        args.out.display()
    );
    ExitCode::SUCCESS
}

fn write_out(
    out: &Path,
    report: &crate::replay::Report,
    text: &str,
    setup: &Setup,
) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let json = serde_json::to_vec_pretty(&report.to_json()).map_err(|e| e.to_string())?;
    let p = out.join("report.json");
    std::fs::write(&p, json).map_err(|e| io(&p, e))?;
    let p = out.join("report.txt");
    std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    for s in &setup.risk.strategies {
        if let Some(svg) = crate::replay::plot::strategy_svg(report, &s.name)? {
            let p = out.join(format!("{}.svg", s.name));
            std::fs::write(&p, svg).map_err(|e| io(&p, e))?;
        }
        if let Some(png) = crate::replay::plot::strategy_png(report, &s.name)? {
            let p = out.join(format!("{}.png", s.name));
            std::fs::write(&p, png).map_err(|e| io(&p, e))?;
        }
    }
    Ok(())
}

/// The policies to replay: the files given (the account limit from the config when it reads),
/// or the config's enabled policies and account limit.
fn policies(config: &Path, files: &[PathBuf]) -> Result<Policies, ExitCode> {
    let report = |errors: &[crate::config::ConfigError], what: &str| {
        for e in errors {
            eprintln!("{e}");
        }
        bad(what)
    };
    if files.is_empty() {
        let loaded = crate::config::load(config, std::env::vars())
            .map_err(|e| report(&e.0, "invalid configuration (or give --policy FILE)"))?;
        let state = loaded.daemon.state_dir.join("state.json");
        return Ok(Policies {
            risk: loaded.risk_config(),
            subaccounts: subaccounts(loaded.enabled()),
            state: state.exists().then_some(state),
        });
    }
    let mut errors = Vec::new();
    let read: Vec<Policy> = files
        .iter()
        .filter_map(|f| crate::config::policy::read_policy(f, &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(report(&errors, "invalid policy"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(p) = read.iter().find(|p| !seen.insert(p.risk.name.clone())) {
        return Err(bad(format!(
            "{}: strategy {:?} is given twice",
            p.file.display(),
            p.risk.name
        )));
    }
    // The account limit and the daemon's settings from the config, when it reads.
    let daemon = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| crate::config::parse_daemon(config, &text).ok());
    let enabled: Vec<&Policy> = read.iter().filter(|p| p.enabled).collect();
    let risk = RiskConfig {
        strategies: enabled.iter().map(|p| p.risk.clone()).collect(),
        account_limit: daemon.as_ref().and_then(|d| d.account_limit.clone()),
        kill_scope: daemon
            .as_ref()
            .map_or(crate::risk::policy::KillScope::Managed, |d| d.kill_scope),
        kill_hold: daemon.as_ref().is_some_and(|d| d.kill_hold),
        blind_after_ms: 10_000,
        cluster: false,
        audit_fills: false,
    };
    let state = daemon
        .map(|d| d.state_dir.join("state.json"))
        .filter(|p| p.exists());
    Ok(Policies {
        risk,
        subaccounts: subaccounts(enabled.into_iter()),
        state,
    })
}

fn subaccounts<'a>(policies: impl Iterator<Item = &'a Policy>) -> HashMap<String, u8> {
    policies
        .map(|p| (p.risk.name.clone(), p.subaccount))
        .collect()
}

/// Each strategy's groups, retired strategies' too, from a `state.json`.
fn read_state(path: &Path) -> Result<BTreeMap<String, Vec<GroupAddress>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state: crate::daemon::store::StateFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a state.json ({e})", path.display()))?;
    Ok(state
        .snapshot
        .strategies
        .into_iter()
        .map(|(name, s)| {
            let groups = s
                .groups
                .into_iter()
                .map(|g| GroupAddress {
                    id: g.id,
                    subaccount: g.subaccount,
                    exchange_index: g.exchange_index,
                })
                .collect();
            (name, groups)
        })
        .collect())
}

/// The account's fills since `since` ago, and every order's group, read from the exchange, with
/// a progress bar on a terminal (the share of the period read: pages come newest first).
fn from_exchange(
    config: &Path,
    since: Duration,
) -> Result<(History, HashMap<String, Option<GroupId>>), ExitCode> {
    let (loaded, signer, rt) = super::prepare(config, "replay")?;
    rt.block_on(async move {
        let mut cfg = crate::kalshi::RestConfig::new(loaded.daemon.exchange.rest_url.clone());
        cfg.write_per_s = Some(loaded.daemon.exchange.write_budget_per_s);
        let api = crate::kalshi::RestClient::new(&cfg, signer).map_err(bad)?;
        let failed = |e: crate::kalshi::ExchangeError| {
            eprintln!("kalshi-riskd replay: reading the exchange: {e}");
            ExitCode::from(1)
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let min_ts = now.saturating_sub(since).as_secs() as i64;
        let progress = Progress::new();
        let mut fills = Vec::new();
        let mut skipped = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let page = api
                .fills_page(min_ts, None, &cursor)
                .await
                .map_err(failed)?;
            pages += 1;
            for f in &page.fills {
                match HistoryFill::from_rest(f, None) {
                    Ok(h) => fills.push(h),
                    Err(reason) => skipped.push(Skipped {
                        at: format!("exchange (page {pages})"),
                        trade_id: f.trade_id.clone(),
                        reason,
                    }),
                }
            }
            // Pages come newest first: how far back the last one reached is how much is read.
            let reached = fills.last().map_or(now.as_millis() as i64, |f| f.ts_ms);
            let done = (now.as_millis() as i64 - reached) as f64 / since.as_millis().max(1) as f64;
            progress.show(&format!(
                "{} fills: {} read ({pages} pages)",
                bar(done),
                fills.len()
            ));
            if page.cursor.is_empty() || page.cursor == cursor {
                progress.show(&format!(
                    "{} fills: {} read ({pages} pages)",
                    bar(1.0),
                    fills.len()
                ));
                break;
            }
            cursor = page.cursor;
        }
        // The fills' orders, for their groups. Orders come newest first and each was placed
        // before its fills: the listing stops once it has found them all, so an account's
        // older history is not read (it is read to the end only if some are never found).
        let mut wanted: std::collections::HashSet<&str> =
            fills.iter().map(|f| f.order_id.as_str()).collect();
        let mut orders = HashMap::new();
        let mut cursor = String::new();
        while !wanted.is_empty() {
            let (page, next) = api.orders_page(&cursor).await.map_err(failed)?;
            for o in page {
                wanted.remove(o.order_id.as_str());
                orders.insert(o.order_id, o.group_id);
            }
            progress.show(&format!(
                "{} fills: {} read; orders: {} read",
                bar(1.0),
                fills.len(),
                orders.len()
            ));
            if next.is_empty() || next == cursor {
                break;
            }
            cursor = next;
        }
        progress.done();
        // Newest first, as the exchange lists them: oldest first for the replay.
        fills.reverse();
        Ok((History::from_fills(fills, skipped), orders))
    })
}

/// `[#####.....]  50 %` for a share done (0 to 1).
fn bar(done: f64) -> String {
    let done = done.clamp(0.0, 1.0);
    let filled = (done * 20.0).round() as usize;
    format!(
        "[{}{}] {:>3.0} %",
        "#".repeat(filled),
        ".".repeat(20 - filled),
        done * 100.0
    )
}

/// One line of progress on stderr, redrawn in place on a terminal (silent otherwise).
struct Progress {
    tty: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        }
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
