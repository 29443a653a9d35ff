//! Policy files, one per strategy.

use std::path::Path;
use std::time::Duration;

use super::source::{ConfigError, Reader, Source};
use crate::risk::guard::EXCHANGE_WINDOW_MS;
use crate::risk::policy::{BlindAction, LostAction, Mode, ResetPolicy, StrategyPolicy};
use crate::risk::{Contracts, Dollars, LimitSpec, Ratio};

/// What happens to a strategy's groups when its policy file is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireAction {
    Keep,
    Trigger,
    Delete,
}

/// One validated policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub file: std::path::PathBuf,
    pub enabled: bool,
    pub subaccount: u8,
    pub exchange_indexes: Vec<u32>,
    pub retire: RetireAction,
    /// What the risk core enforces.
    pub risk: StrategyPolicy,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The shortest window a limit or the account may have: below a second a window holds too
/// little to mean anything (and `"999us"` would count nothing at all).
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest window: seven days. The daemon keeps every fill of its longest window in
/// memory, and rebuilds windows from the exchange's fills at start.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3_600);

/// Reads one policy file; `errors` collects everything wrong with it.
pub fn read_policy(path: &Path, errors: &mut Vec<ConfigError>) -> Option<Policy> {
    match Source::read(path) {
        Ok(src) => from_source(&src, errors),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Checks a policy's text as if read from `path` (the file name is the strategy's name unless
/// the policy says otherwise); `errors` collects everything wrong with it.
pub fn parse_policy(path: &Path, text: &str, errors: &mut Vec<ConfigError>) -> Option<Policy> {
    match Source::parse(path, text) {
        Ok(src) => from_source(&src, errors),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn from_source(src: &Source, errors: &mut Vec<ConfigError>) -> Option<Policy> {
    let path = src.path.as_path();
    let mut r = Reader::new(src);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = r.string("strategy").unwrap_or(stem);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        r.fail(
            "strategy",
            format!("{name:?}: use letters, digits, '-', '_' and '.' only"),
        );
    }
    let enabled = r.boolean("enabled").unwrap_or(true);
    let subaccount = r.int("subaccount", 0..=63).unwrap_or(0) as u8;
    let exchange_indexes: Vec<u32> = r
        .int_array("exchange_indexes", 0..=1_000)
        .unwrap_or_else(|| vec![0])
        .into_iter()
        .map(|i| i as u32)
        .collect();
    if exchange_indexes.is_empty() {
        r.fail(
            "exchange_indexes",
            "needs at least one exchange index (0 is the default instance)",
        );
    }
    let mut sorted = exchange_indexes.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != exchange_indexes.len() {
        r.fail("exchange_indexes", "lists an exchange index twice");
    }
    let mode = match r.choice("mode", &["enforce", "shadow"], "enforce").as_str() {
        "shadow" => Mode::Shadow,
        _ => Mode::Enforce,
    };

    r.table("group");
    let group_limit = match r.int("group.contracts_limit", 1..=1_000_000) {
        Some(n) => Contracts::from_whole(n),
        None => {
            if !r.has("group.contracts_limit") {
                r.fail(
                    "group.contracts_limit",
                    "is required (the exchange-side limit per group, 1..=1000000)",
                );
            }
            Contracts::from_whole(1)
        }
    };

    let mut limits = Vec::new();
    for i in 0..r.array_len("limit") {
        let at = |k: &str| format!("limit[{i}].{k}");
        let lname = r.required_string(&at("name")).unwrap_or_default();
        if limits.iter().any(|l: &LimitSpec| l.name == lname) && !lname.is_empty() {
            r.fail(&at("name"), format!("{lname:?} is used by another limit"));
        }
        let window = r.bounded_duration(&at("window"), "a window", MIN_WINDOW, MAX_WINDOW);
        if window.is_none() && !r.has(&at("window")) {
            r.fail(&at("window"), "is required (for example \"15s\" or \"1h\")");
        }
        let max_contracts = r
            .int(&at("max_contracts"), 1..=i64::MAX / 1_000)
            .map(Contracts::from_whole);
        let max_notional =
            r.decimal_text(&at("max_notional_dollars"))
                .and_then(|t| match Dollars::parse(&t) {
                    Ok(d) if d > Dollars::ZERO => Some(d),
                    _ => {
                        r.fail(
                            &at("max_notional_dollars"),
                            format!("{t} is not a positive dollar amount with at most 6 decimals"),
                        );
                        None
                    }
                });
        let max_fills = r.int(&at("max_fills"), 1..=i64::MAX / 2);
        if max_contracts.is_none()
            && max_notional.is_none()
            && max_fills.is_none()
            && !r.has(&at("max_contracts"))
            && !r.has(&at("max_notional_dollars"))
            && !r.has(&at("max_fills"))
        {
            r.fail(
                &format!("limit[{i}]"),
                "sets no maximum: give max_contracts, max_notional_dollars or max_fills",
            );
        }
        let warn_ratio = r
            .number(&at("warn_ratio"), 0.0..=1.0)
            .and_then(Ratio::from_decimal)
            .unwrap_or(Ratio::from_ppm(800_000));
        let allow_above = r.boolean(&at("allow_above_exchange")).unwrap_or(false);
        if let (Some(w), Some(max)) = (window, max_contracts)
            && ms(w) <= EXCHANGE_WINDOW_MS
            && max > group_limit
            && !allow_above
        {
            r.fail(
                &at("max_contracts"),
                format!(
                    "{} is above group.contracts_limit {}: the exchange would trigger first; \
                     lower it or set allow_above_exchange = true",
                    max.whole().unwrap_or(0),
                    group_limit.whole().unwrap_or(0)
                ),
            );
        }
        limits.push(LimitSpec {
            name: lname,
            window_ms: window.map_or(1, ms),
            max_contracts,
            max_notional,
            max_fills,
            warn_ratio,
        });
    }

    r.table("reset");
    let reset = match r
        .choice("reset.mode", &["manual", "cooldown"], "manual")
        .as_str()
    {
        "cooldown" => ResetPolicy::Cooldown {
            cooldown_ms: r
                .bounded_duration("reset.cooldown", "a cooldown", MIN_WINDOW, MAX_WINDOW)
                .map_or(300_000, ms),
            resume_ratio: r
                .number("reset.resume_ratio", 0.0..=1.0)
                .and_then(Ratio::from_decimal)
                .unwrap_or(Ratio::from_ppm(500_000)),
            max_auto_resets: r.int("reset.max_auto_resets", 0..=1_000).unwrap_or(3) as u32,
        },
        _ => {
            for k in ["cooldown", "resume_ratio", "max_auto_resets"] {
                if r.has(&format!("reset.{k}")) {
                    r.fail(
                        &format!("reset.{k}"),
                        "only applies with reset.mode = \"cooldown\"",
                    );
                }
            }
            ResetPolicy::Manual
        }
    };
    r.table("blind");
    let blind = match r
        .choice("blind.action", &["alert", "trigger"], "alert")
        .as_str()
    {
        "trigger" => BlindAction::Trigger,
        _ => BlindAction::Alert,
    };
    r.table("owner_lost");
    let owner_lost = match r
        .choice("owner_lost.action", &["trigger", "guard"], "trigger")
        .as_str()
    {
        "guard" => LostAction::Guard,
        _ => LostAction::Trigger,
    };
    r.table("retire");
    let retire = match r
        .choice("retire.action", &["keep", "trigger", "delete"], "keep")
        .as_str()
    {
        "trigger" => RetireAction::Trigger,
        "delete" => RetireAction::Delete,
        _ => RetireAction::Keep,
    };
    let found = r.finish();
    let ok = found.is_empty();
    errors.extend(found);
    ok.then(|| Policy {
        file: path.to_owned(),
        enabled,
        subaccount,
        exchange_indexes,
        retire,
        risk: StrategyPolicy {
            name,
            mode,
            group_limit,
            limits,
            reset,
            blind,
            owner_lost,
        },
    })
}
