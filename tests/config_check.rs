//! The config and policy files and `kalshi-riskd check`: the shipped examples pass; every
//! mistake is reported, all together, each naming file, line and key; environment overrides
//! layer over the file; exit codes are 0 and 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use kalshi_riskd::config::{self, Environment};
use kalshi_riskd::risk::policy::{BlindAction, KillScope, Mode, ResetPolicy};
use kalshi_riskd::risk::{Contracts, Dollars};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kalshi-riskd.toml")
}

/// A config dir with `kalshi-riskd.toml` and the given policy files.
fn setup(daemon: &str, policies: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let path = dir.path().join("kalshi-riskd.toml");
    std::fs::write(&path, daemon).unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    (dir, path)
}

const MINIMAL: &str =
    "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k1\"\n\n[policies]\ndir = \"policies\"\n";
const POLICY: &str = "[group]\ncontracts_limit = 100\n";

fn errors(daemon: &str, policies: &[(&str, &str)]) -> Vec<String> {
    let (_dir, path) = setup(daemon, policies);
    match config::load(&path, Vec::new()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// The shipped config with a real key id in place of its placeholder, as an operator sets it.
fn configured() -> Vec<(String, String)> {
    vec![(
        "KALSHI_RISKD__EXCHANGE__API_KEY_ID".into(),
        "a952bcbe-ec3b-4b5b-b8f9-11dae589608c".into(),
    )]
}

#[test]
fn the_shipped_example_with_its_placeholder_key_id_is_not_configured() {
    let out = bin()
        .args(["--config", example().to_str().unwrap(), "check"])
        .env_remove("KALSHI_RISKD__EXCHANGE__API_KEY_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kalshi-riskd.toml:15: exchange.api_key_id")
            && err.contains("the example's placeholder, not a key"),
        "{err}"
    );
    let out = bin()
        .args(["--config", example().to_str().unwrap(), "check"])
        .envs(configured())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn the_shipped_examples_load_with_their_documented_values() {
    let loaded = config::load(&example(), configured()).unwrap();
    let d = &loaded.daemon;
    assert_eq!(d.exchange.environment, Environment::Demo);
    assert_eq!(d.exchange.write_budget_per_s, 10.0);
    assert_eq!(d.kill_scope, KillScope::Account);
    assert!(d.policies_dir.ends_with("config/policies"));
    let names: Vec<_> = loaded
        .policies
        .iter()
        .map(|p| p.risk.name.as_str())
        .collect();
    assert_eq!(names, ["btc-daily-mm", "eth-arb"]);
    let mm = &loaded.policies[0].risk;
    assert_eq!(mm.group_limit, Contracts::from_whole(500));
    assert_eq!(
        mm.limits[1].max_notional,
        Some(Dollars::parse("5000").unwrap())
    );
    assert_eq!(mm.limits[1].window_ms, 3_600_000);
    let arb = &loaded.policies[1];
    assert_eq!(
        (arb.subaccount, arb.exchange_indexes.clone()),
        (1, vec![0, 2])
    );
    assert_eq!(arb.risk.blind, BlindAction::Trigger);
    assert!(matches!(
        arb.risk.reset,
        ResetPolicy::Cooldown {
            cooldown_ms: 300_000,
            max_auto_resets: 3,
            ..
        }
    ));
    assert_eq!(loaded.risk_config().strategies.len(), 2);
}

#[test]
fn check_prints_one_line_per_strategy_and_exits_0() {
    let out = bin()
        .args(["check", "--config"])
        .arg(example())
        .envs(configured())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("btc-daily-mm: enforce"), "{text}");
    assert!(
        lines[2].starts_with("eth-arb: enforce, subaccount 1"),
        "{text}"
    );
    // The path may also come from $KALSHI_RISKD_CONFIG.
    let out = bin()
        .arg("check")
        .env("KALSHI_RISKD_CONFIG", example())
        .envs(configured())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_reports_every_error_with_file_line_and_key_and_exits_2() {
    let (_dir, path) = setup(
        "[exchange]\nenvironment = \"staging\"\napi_key_id = \"k\"\ncolour = \"blue\"\n\n[policies]\ndir = \"policies\"\n",
        &[(
            "a.toml",
            "subaccount = 99\n[group]\ncontracts_limit = 100\n",
        )],
    );
    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "kalshi-riskd.toml:2: exchange.environment: \"staging\" is not one of prod, demo, sim"
        ),
        "{err}"
    );
    assert!(
        err.contains("kalshi-riskd.toml:4: exchange.colour: unknown key"),
        "{err}"
    );
    assert!(
        err.contains("a.toml:1: subaccount: 99 is out of range 0..=63"),
        "{err}"
    );
    assert!(err.contains("3 errors"), "{err}");
    let out = bin()
        .args(["check", "--config", "/nonexistent/k.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/k.toml: cannot read"));
}

#[test]
fn each_rule_names_its_key() {
    // (daemon config, policy file, expected fragment)
    let cases: &[(&str, &str, &str)] = &[
        (
            "[exchange]\napi_key_id = \"k\"\n[policies]\ndir = \"policies\"\n",
            POLICY,
            ":1: exchange.environment: is required",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\n[policies]\ndir = \"policies\"\n",
            POLICY,
            "exchange.api_key_id: is required",
        ),
        (
            &format!("{MINIMAL}[exchange.extra]\n"),
            POLICY,
            "exchange.extra: unknown key",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\ntrigger_reserve = 1.5\n[policies]\ndir = \"policies\"\n",
            POLICY,
            ":4: exchange.trigger_reserve: 1.5 is out of range",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\nrest_url = \"ftp://x\"\n[policies]\ndir = \"policies\"\n",
            POLICY,
            "exchange.rest_url: \"ftp://x\" must start with http:// or https://",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\ncontrol = \"fax\"\n[policies]\ndir = \"policies\"\n",
            POLICY,
            "exchange.control: \"fax\" is not one of rest, fix",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\ncontrol = \"fix\"\nfix_addr = \"https://fix.example:8228\"\n[policies]\ndir = \"policies\"\n",
            POLICY,
            ":5: exchange.fix_addr: \"https://fix.example:8228\": scheme \"https\" is not tls:// or tcp://",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\nfix_addr = \"fix.example\"\n[policies]\ndir = \"policies\"\n",
            POLICY,
            "exchange.fix_addr: \"fix.example\" is not host:port",
        ),
        (
            &format!("{MINIMAL}[account]\nwindow = \"15s\"\n"),
            POLICY,
            "account.max_contracts: is required",
        ),
        (
            &format!("{MINIMAL}[http]\nlisten = \"localhost\"\n"),
            POLICY,
            "http.listen: \"localhost\" is not an address",
        ),
        (
            &format!("{MINIMAL}[kill]\nhold = \"yes\"\n"),
            POLICY,
            "kill.hold: expected true or false",
        ),
        (
            &format!("{MINIMAL}[log]\nformat = \"xml\"\n"),
            POLICY,
            "log.format: \"xml\" is not one of json, pretty",
        ),
        (
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\n[policies]\ndir = \"nowhere\"\n",
            POLICY,
            "policies.dir: cannot read",
        ),
        (MINIMAL, "", "p.toml: group.contracts_limit: is required"),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 0\n",
            "p.toml:2: group.contracts_limit: 0 is out of range 1..=1000000",
        ),
        (
            MINIMAL,
            "exchange_indexes = []\n[group]\ncontracts_limit = 5\n",
            "p.toml:1: exchange_indexes: needs at least one",
        ),
        (
            MINIMAL,
            "exchange_indexes = [0, 0]\n[group]\ncontracts_limit = 5\n",
            "exchange_indexes: lists an exchange index twice",
        ),
        (
            MINIMAL,
            "strategy = \"bad name!\"\n[group]\ncontracts_limit = 5\n",
            "p.toml:1: strategy: \"bad name!\"",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[[limit]]\nwindow = \"15s\"\nmax_contracts = 1\n",
            "p.toml:3: limit[0].name: is required",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[[limit]]\nname = \"x\"\nmax_contracts = 1\n",
            "limit[0].window: is required",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[[limit]]\nname = \"x\"\nwindow = \"0s\"\nmax_contracts = 1\n",
            "p.toml:5: limit[0].window: must be longer than zero",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[[limit]]\nname = \"x\"\nwindow = \"1m\"\nmax_notional_dollars = 1.0000001\n",
            "p.toml:6: limit[0].max_notional_dollars: 1.0000001 is not a positive dollar amount",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[[limit]]\nname = \"x\"\nwindow = \"1m\"\nmax_fills = 3\nwarn_ratio = 2\n",
            "p.toml:7: limit[0].warn_ratio: 2 is out of range",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[[limit]]\nname = \"x\"\nwindow = \"10s\"\nmax_contracts = 6\n",
            "p.toml:6: limit[0].max_contracts: 6 is above group.contracts_limit 5",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[reset]\nmode = \"manual\"\ncooldown = \"5m\"\n",
            "p.toml:5: reset.cooldown: only applies with reset.mode = \"cooldown\"",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[blind]\naction = \"panic\"\n",
            "blind.action: \"panic\" is not one of alert, trigger",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[owner_lost]\naction = \"ignore\"\n",
            "owner_lost.action: \"ignore\" is not one of trigger, guard",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\n[retire]\naction = \"burn\"\n",
            "retire.action: \"burn\" is not one of keep, trigger, delete",
        ),
        (
            MINIMAL,
            "[group]\ncontracts_limit = 5\nlimits = 3\n",
            "p.toml:3: group.limits: unknown key",
        ),
        (MINIMAL, "[group\n", "p.toml:1: not valid TOML"),
    ];
    for (daemon, policy, want) in cases {
        let found = errors(daemon, &[("p.toml", policy)]);
        assert!(
            found.iter().any(|e| e.contains(want)),
            "want {want:?}\nin {found:#?}\nfor\n{daemon}\n---\n{policy}"
        );
    }
    // The allowed way around the exchange-limit rule, and a notional with cents.
    let ok = "[group]\ncontracts_limit = 5\n[[limit]]\nname = \"x\"\nwindow = \"10s\"\nmax_contracts = 6\nallow_above_exchange = true\n[[limit]]\nname = \"y\"\nwindow = \"1h\"\nmax_notional_dollars = 12.34\n";
    assert_eq!(errors(MINIMAL, &[("p.toml", ok)]), Vec::<String>::new());
}

#[test]
fn environment_overrides_layer_over_the_file() {
    let (_dir, path) = setup(MINIMAL, &[("p.toml", POLICY)]);
    let env = vec![
        (
            "KALSHI_RISKD__EXCHANGE__WRITE_BUDGET_PER_S".to_owned(),
            "30".to_owned(),
        ),
        ("kalshi_riskd__kill__scope".to_owned(), "managed".to_owned()),
        (
            "KALSHI_RISKD__STREAM__BLIND_AFTER".to_owned(),
            "3s".to_owned(),
        ),
        (
            "KALSHI_RISKD__EXCHANGE__API_KEY_ID".to_owned(),
            "000123".to_owned(),
        ),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let loaded = config::load(&path, env).unwrap();
    assert_eq!(loaded.daemon.exchange.write_budget_per_s, 30.0);
    assert_eq!(loaded.daemon.kill_scope, KillScope::Managed);
    assert_eq!(loaded.daemon.blind_after.as_secs(), 3);
    assert_eq!(
        loaded.daemon.exchange.api_key_id, "000123",
        "strings stay strings (no numeric coercion)"
    );
    let bad = config::load(
        &path,
        vec![("KALSHI_RISKD__EXCHANGE__NOPE".to_owned(), "1".to_owned())],
    )
    .unwrap_err();
    assert_eq!(
        bad.0[0].to_string(),
        "environment variable KALSHI_RISKD__EXCHANGE__NOPE: exchange.nope: unknown key"
    );
}

#[test]
fn strategy_names_default_to_the_file_stem_and_must_be_unique() {
    let (_dir, path) = setup(
        MINIMAL,
        &[
            ("alpha.toml", POLICY),
            (
                "beta.toml",
                "enabled = false\nmode = \"shadow\"\n[group]\ncontracts_limit = 9\n",
            ),
        ],
    );
    let loaded = config::load(&path, Vec::new()).unwrap();
    assert_eq!(loaded.policies[0].risk.name, "alpha");
    assert_eq!(loaded.policies[1].risk.mode, Mode::Shadow);
    assert_eq!(loaded.enabled().count(), 1);
    assert_eq!(
        loaded.risk_config().strategies.len(),
        1,
        "disabled strategies are not enforced"
    );
    let found = errors(
        MINIMAL,
        &[
            ("a.toml", POLICY),
            ("b.toml", "strategy = \"a\"\n[group]\ncontracts_limit = 5\n"),
        ],
    );
    assert!(
        found
            .iter()
            .any(|e| e.contains("strategy: \"a\" is also the strategy of")),
        "{found:?}"
    );
    // Files that are not *.toml are ignored.
    assert!(errors(MINIMAL, &[("a.toml", POLICY), ("README", "not toml")]).is_empty());
}

#[test]
fn durations_no_one_means_are_refused_with_their_location() {
    let policy = |window: &str| {
        format!(
            "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"f\"\nwindow = \"{window}\"\nmax_contracts = 10\n"
        )
    };
    for (window, said) in [
        (
            "999us",
            "\"999us\" is out of range: a window runs from 1s to 7days",
        ),
        ("99999999h", "\"99999999h\" is out of range"),
        ("8days", "\"8days\" is out of range"),
        ("2s 500us", "finer than a millisecond"),
    ] {
        let errs = errors(MINIMAL, &[("p.toml", &policy(window))]);
        assert_eq!(errs.len(), 1, "{window}: {errs:?}");
        assert!(
            errs[0].contains("p.toml:5: limit[0].window: ") && errs[0].contains(said),
            "{window}: {errs:?}"
        );
    }
    for window in ["1s", "7days", "1h 30m", "1500ms"] {
        assert!(
            errors(MINIMAL, &[("p.toml", &policy(window))]).is_empty(),
            "{window} is a window someone means"
        );
    }
    let errs = errors(
        &format!(
            "{MINIMAL}[stream]\nblind_after = \"1ns\"\n[account]\nmax_contracts = 5\nwindow = \"10ms\"\n"
        ),
        &[("p.toml", POLICY)],
    );
    let text = errs.join("\n");
    assert!(
        text.contains("kalshi-riskd.toml:8: stream.blind_after: \"1ns\" is out of range: stream.blind_after runs from 1s to 1h"),
        "{text}"
    );
    assert!(
        text.contains("kalshi-riskd.toml:11: account.window: \"10ms\" is out of range"),
        "{text}"
    );
    let cooldown =
        "[group]\ncontracts_limit = 100\n[reset]\nmode = \"cooldown\"\ncooldown = \"100ms\"\n";
    let errs = errors(MINIMAL, &[("p.toml", cooldown)]);
    assert!(
        errs.len() == 1 && errs[0].contains("p.toml:5: reset.cooldown: \"100ms\" is out of range"),
        "{errs:?}"
    );
}

#[test]
fn unreadable_files_are_named_with_the_line_where_there_is_one() {
    let (dir, path) = setup(MINIMAL, &[("ok.toml", POLICY)]);
    let p = dir.path().join("policies");
    std::fs::write(
        p.join("bad-utf8.toml"),
        b"[group]\ncontracts_limit = 1\n# caf\xe9\n",
    )
    .unwrap();
    let deep = format!("x = {}{}\n", "[".repeat(300), "]".repeat(300));
    std::fs::write(p.join("deep.toml"), deep).unwrap();
    std::fs::write(p.join("no-group.toml"), "strategy = \"n\"\n").unwrap();
    let errs: Vec<String> = match config::load(&path, Vec::new()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    };
    let find = |file: &str| {
        errs.iter()
            .find(|e| e.contains(file))
            .unwrap_or_else(|| panic!("no error for {file}: {errs:?}"))
            .clone()
    };
    assert!(
        find("bad-utf8.toml").contains("bad-utf8.toml:3: not UTF-8 text: byte 0xe9 at column 6"),
        "{errs:?}"
    );
    assert!(
        find("deep.toml").contains("deep.toml:1: not valid TOML"),
        "{errs:?}"
    );
    assert!(
        find("no-group.toml").contains("no-group.toml: group.contracts_limit: is required"),
        "{errs:?}"
    );
    // A policy directory that cannot be read names the config file and the key.
    let (_dir, path) = setup(
        "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k1\"\n\n[policies]\ndir = \"missing\"\n",
        &[],
    );
    let errs = config::load(&path, Vec::new()).unwrap_err().to_string();
    assert!(
        errs.contains("kalshi-riskd.toml:6: policies.dir: cannot read ")
            && errs.contains("missing"),
        "{errs}"
    );
}

#[test]
fn every_error_of_a_mutated_policy_names_its_file() {
    let original = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policies/btc-daily-mm.toml"),
    )
    .unwrap();
    let (dir, path) = setup(MINIMAL, &[]);
    let target = dir.path().join("policies/p.toml");
    let mut rng = fastrand::Rng::with_seed(12);
    let alphabet = b"[]=\"'.#\n 0123456789abcdefghms-_{}\xff\xc3";
    for _ in 0..1_000 {
        let mut bytes = original.clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..bytes.len());
            match rng.u8(..3) {
                0 => bytes[at] = alphabet[rng.usize(..alphabet.len())],
                1 => bytes.insert(at, alphabet[rng.usize(..alphabet.len())]),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        std::fs::write(&target, &bytes).unwrap();
        if let Err(errs) = config::load(&path, Vec::new()) {
            for e in errs.0 {
                assert!(
                    e.origin.ends_with("p.toml") && (e.line.is_some() || !e.key.is_empty()),
                    "{e} has no line and no key, for\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
}

#[test]
fn version_names_the_git_revision_it_was_built_from() {
    let out = bin().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let revision = env!("KALSHI_RISKD_REVISION");
    assert_eq!(
        text.trim(),
        format!("kalshi-riskd {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
    // Built from this checkout: the revision is a commit id, not "unknown".
    if std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".git")
        .exists()
    {
        assert!(
            revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit()),
            "{revision}"
        );
    }
}

/// The template unit keeps each account's files apart with `Environment=` overrides: they must
/// name real keys, as the loader reads them, with the instance's name in place.
#[test]
fn the_template_units_overrides_put_each_account_in_its_own_directories() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/kalshi-riskd@.service"),
    )
    .unwrap();
    let env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.replace("%i", "acct1"))
        })
        .collect();
    assert_eq!(env.len(), 2, "{env:?}");
    let (_dir, path) = setup(MINIMAL, &[("a.toml", POLICY)]);
    let loaded = config::load(&path, env).unwrap();
    assert_eq!(
        loaded.daemon.state_dir,
        Path::new("/var/lib/kalshi-riskd/acct1")
    );
    assert_eq!(
        loaded.daemon.admin_socket,
        Path::new("/run/kalshi-riskd/acct1/admin.sock")
    );
    for line in [
        "StateDirectory=kalshi-riskd/%i",
        "RuntimeDirectory=kalshi-riskd/%i",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}

#[test]
fn the_man_page_and_completions_come_from_the_cli_itself() {
    let out = bin().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.starts_with(".ie") && man.contains(".TH kalshi-riskd 1"),
        "{man}"
    );
    assert!(man.contains("\\-\\-socket"), "{man}");
    for (shell, mark) in [
        ("bash", "_kalshi__riskd()"),
        ("zsh", "#compdef kalshi-riskd"),
        ("fish", "complete -c kalshi-riskd"),
    ] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(mark), "{shell}: {text}");
        assert!(text.contains("kill"), "{shell} completes the commands");
    }
}

/// `[cluster]`: each rule names its key. A build without the `cluster` feature refuses the
/// section itself, saying which build has it.
#[test]
fn the_cluster_section_is_checked_key_by_key() {
    let bad = format!(
        "{MINIMAL}[cluster]\nendpoints = [\"etcd:2379\", 7]\nmember = \"host a\"\nlease_ttl = \"1s\"\nttl = 3\n"
    );
    let found = errors(&bad, &[("mm.toml", POLICY)]).join("\n");
    for want in [
        "cluster.endpoints[0]: \"etcd:2379\" must start with http:// or https://",
        "cluster.endpoints[1]: expected a string",
        "cluster.name: is required",
        "cluster.member: \"host a\": use letters, digits",
        "cluster.lease_ttl:",
        "cluster.ttl: unknown key",
    ] {
        assert!(found.contains(want), "no {want:?} in:\n{found}");
    }
    let good = format!(
        "{MINIMAL}[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\nname = \"acct-1\"\nmember = \"host-a\"\n"
    );
    let found = errors(&good, &[("mm.toml", POLICY)]);
    if cfg!(feature = "cluster") {
        assert!(found.is_empty(), "{found:?}");
        let (_dir, path) = setup(&good, &[("mm.toml", POLICY)]);
        let loaded = config::load(&path, Vec::new()).unwrap();
        let described = kalshi_riskd::cli::describe(&loaded);
        assert!(
            described.contains(
                "cluster acct-1 as member host-a: etcd http://127.0.0.1:2379, lease 5s\n"
            ),
            "{described}"
        );
        assert!(
            described.contains(", if its member is lost: trigger\n"),
            "fail closed unless the policy says guard: {described}"
        );
        let c = loaded.daemon.cluster.expect("cluster mode");
        assert_eq!(
            (c.name.as_str(), c.member.as_str(), c.lease_ttl),
            ("acct-1", "host-a", std::time::Duration::from_secs(5))
        );
    } else {
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("cluster: this build has no cluster mode"),
            "{found:?}"
        );
    }
}
