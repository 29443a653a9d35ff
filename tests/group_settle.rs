//! Settling open create intents against the simulator (the library's group preparation,
//! in-process, over real HTTP): whatever a crash left, each (strategy, subaccount, exchange
//! index) ends with exactly one group, and what was done is recorded for the audit.

mod support;

use std::collections::BTreeSet;

use kalshi_riskd::config::{self, Loaded};
use kalshi_riskd::daemon::groups::prepare;
use kalshi_riskd::daemon::intents::{CreateIntent, IntentLog};
use kalshi_riskd::kalshi::{GroupControl, GroupId};
use kalshi_riskd::risk::Contracts;
use kalshi_riskd::risk::engine::{DecisionKind, Snapshot};
use serde_json::Value;
use support::TestSim;

/// A config with these policy files (the exchange URLs are never used: the control is given).
fn loaded(policies: &[(&str, &str)]) -> (tempfile::TempDir, Loaded) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(
        &path,
        "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\n[policies]\ndir = \"policies\"\n",
    )
    .unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    let l = config::load(&path, Vec::new()).unwrap();
    (dir, l)
}

fn intent(strategy: &str, subaccount: u8, limit: i64, known: &BTreeSet<GroupId>) -> CreateIntent {
    CreateIntent {
        id: 0,
        strategy: strategy.into(),
        subaccount,
        exchange_index: 0,
        contracts_limit: Contracts::from_whole(limit),
        known: std::sync::Arc::new(known.clone()),
        at_ms: 0,
    }
}

async fn ids_on_exchange(t: &TestSim) -> BTreeSet<String> {
    t.control("GET", "/groups", None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|g: &Value| g["id"].as_str().unwrap().to_owned())
        .collect()
}

/// How many groups the preparation deleted as duplicates.
fn deleted(p: &kalshi_riskd::daemon::groups::Prepared) -> usize {
    (p.decisions.iter())
        .filter(|d| d.event == DecisionKind::OrphanDeleted)
        .count()
}

/// Prepares `l`'s groups while every create lands and is answered 500 (its outcome unknown to
/// the daemon).
async fn prepare_losing_create_answers(
    t: &TestSim,
    control: &GroupControl,
    intents: &IntentLog,
    l: &Loaded,
) -> kalshi_riskd::daemon::groups::Prepared {
    t.set_faults(serde_json::json!({
        "error_rate": 1.0,
        "error_path": "/trade-api/v2/portfolio/order_groups/create",
        "error_after_apply": true,
    }))
    .await;
    prepare(control, intents, l, &Snapshot::default(), true)
        .await
        .unwrap()
}

#[tokio::test]
async fn open_intents_are_settled_one_group_per_slot() {
    let t = TestSim::start().await;
    let control = GroupControl::rest(t.rest_client(|_| {}));
    let state = tempfile::tempdir().unwrap();
    let intents = IntentLog::open(state.path()).unwrap();
    // A group someone else made before any of this: never touched.
    let stranger = t.create_group(100, 0).await;
    let mut known: BTreeSet<GroupId> = [GroupId::new(stranger.clone())].into();

    // "a" and "b" share subaccount 0 and limit 100. "a"'s create landed twice (a lost answer,
    // retried); "b" wrote its intent after "a"'s groups existed, and its create landed once.
    intents.record(intent("a", 0, 100, &known)).unwrap();
    let a1 = t.create_group(100, 0).await;
    let a2 = t.create_group(100, 0).await;
    known.extend([GroupId::new(a1.clone()), GroupId::new(a2.clone())]);
    intents.record(intent("b", 0, 100, &known)).unwrap();
    let b1 = t.create_group(100, 0).await;
    // "gone" is no longer configured: its orphan is deleted.
    intents.record(intent("gone", 5, 100, &known)).unwrap();
    let gone = t.create_group(100, 5).await;
    // "c"'s create never reached the exchange.
    intents.record(intent("c", 2, 30, &known)).unwrap();

    let policy = "[group]\ncontracts_limit = 100\n";
    let (_dir, l) = loaded(&[
        ("a.toml", policy),
        ("b.toml", policy),
        ("c.toml", "subaccount = 2\n[group]\ncontracts_limit = 30\n"),
    ]);
    let p = prepare(&control, &intents, &l, &Snapshot::default(), true)
        .await
        .unwrap();

    let a = p.groups["a"][0].id.to_string();
    let b = p.groups["b"][0].id.to_string();
    let c = p.groups["c"][0].id.to_string();
    assert_eq!(b, b1, "b gets its own group back, not one of a's");
    assert!(a == a1 || a == a2, "a adopts one of its own: {a}");
    let on_exchange = ids_on_exchange(&t).await;
    let expected: BTreeSet<String> = [stranger, a.clone(), b, c].into();
    assert_eq!(
        on_exchange, expected,
        "a's duplicate and gone's orphan deleted"
    );
    assert!(!on_exchange.contains(&gone));

    let events: Vec<(DecisionKind, String)> = p
        .decisions
        .iter()
        .map(|d| (d.event, d.strategy.clone().unwrap()))
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|(e, _)| *e == DecisionKind::OrphanAdopted)
            .count(),
        2,
        "{events:?}"
    );
    for who in ["a", "gone"] {
        assert!(
            events.contains(&(DecisionKind::OrphanDeleted, who.to_owned())),
            "{events:?}"
        );
    }
    // Every intent is settled (c's, too: it created nothing, then a new one was made).
    assert_eq!(p.settled_intents.len(), 5, "{:?}", p.settled_intents);
    intents.close(&p.settled_intents).unwrap();
    assert!(IntentLog::open(state.path()).unwrap().pending().is_empty());
}

#[tokio::test]
async fn a_lost_answer_is_settled_at_once_and_a_refused_create_closes_its_intent() {
    let t = TestSim::start_with(|cfg| cfg.engine.max_groups = 1).await;
    let control = GroupControl::rest(t.rest_client(|_| {}));
    let state = tempfile::tempdir().unwrap();
    let intents = IntentLog::open(state.path()).unwrap();
    let (_dir, l) = loaded(&[("a.toml", "[group]\ncontracts_limit = 100\n")]);
    // The create lands but its answer is a 500: settled by listing, adopted.
    let p = prepare_losing_create_answers(&t, &control, &intents, &l).await;
    assert_eq!(ids_on_exchange(&t).await.len(), 1);
    assert_eq!(p.groups["a"].len(), 1);
    assert_eq!(
        intents.pending().len(),
        1,
        "open until state.json names the group"
    );
    intents.close(&p.settled_intents).unwrap();

    // The account is at the exchange's group cap: the create is refused, nothing was
    // created, and the intent is closed with the error.
    t.set_faults(serde_json::json!({})).await;
    let (_dir, l) = loaded(&[("b.toml", "[group]\ncontracts_limit = 5\n")]);
    let e = prepare(&control, &intents, &l, &Snapshot::default(), true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("order_group_limit_reached"), "{e}");
    assert!(intents.pending().is_empty());
    assert_eq!(ids_on_exchange(&t).await.len(), 1);
}

#[tokio::test]
async fn intents_written_in_one_batch_each_take_one_of_the_groups_their_batch_made() {
    let t = TestSim::start().await;
    let control = GroupControl::rest(t.rest_client(|_| {}));
    let state = tempfile::tempdir().unwrap();
    let intents = IntentLog::open(state.path()).unwrap();
    // One batch for three strategies with the same kind of group (subaccount 0, limit 100);
    // the process died after two of the three creates landed.
    let known = std::sync::Arc::new(BTreeSet::new());
    let batch: Vec<CreateIntent> = ["x", "y", "z"]
        .iter()
        .map(|s| CreateIntent {
            known: known.clone(),
            ..intent(s, 0, 100, &BTreeSet::new())
        })
        .collect();
    intents.record_all(batch).unwrap();
    let made: BTreeSet<String> =
        [t.create_group(100, 0).await, t.create_group(100, 0).await].into();
    // The batch shares one set of known groups in the file.
    let file: Value =
        serde_json::from_slice(&std::fs::read(state.path().join("intents.json")).unwrap()).unwrap();
    assert_eq!(file["known_sets"].as_array().unwrap().len(), 1, "{file}");

    let policy = "[group]\ncontracts_limit = 100\n";
    let (_dir, l) = loaded(&[("x.toml", policy), ("y.toml", policy), ("z.toml", policy)]);
    let p = prepare(&control, &intents, &l, &Snapshot::default(), true)
        .await
        .unwrap();
    let got: BTreeSet<String> = ["x", "y", "z"]
        .iter()
        .map(|s| p.groups[*s][0].id.to_string())
        .collect();
    assert_eq!(got.len(), 3, "one group each: {got:?}");
    assert!(
        made.is_subset(&got),
        "both groups made are adopted, none deleted: {got:?}"
    );
    assert_eq!(ids_on_exchange(&t).await, got);
    assert_eq!(deleted(&p), 0, "{:?}", p.decisions);
    // Three intents settled, one more written and closed for the create that had not landed.
    assert_eq!(p.settled_intents.len(), 4, "{:?}", p.settled_intents);
}

#[tokio::test]
async fn creates_in_flight_together_whose_answers_were_lost_each_end_with_a_group_of_their_own() {
    let t = TestSim::start().await;
    let control = GroupControl::rest(t.rest_client(|_| {}));
    let state = tempfile::tempdir().unwrap();
    let intents = IntentLog::open(state.path()).unwrap();
    // Twelve strategies with the same kind of group (subaccount 0, limit 100): more than are
    // created at once. Every create lands, and every answer is a 500.
    let policy = "[group]\ncontracts_limit = 100\n";
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    let files: Vec<(String, &str)> = names
        .iter()
        .map(|n| (format!("{n}.toml"), policy))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(f, p)| (f.as_str(), *p)).collect();
    let (_dir, l) = loaded(&files);
    let p = prepare_losing_create_answers(&t, &control, &intents, &l).await;
    let got: BTreeSet<String> = names
        .iter()
        .map(|s| {
            assert_eq!(p.groups[s].len(), 1, "{s}: {:?}", p.groups[s]);
            p.groups[s][0].id.to_string()
        })
        .collect();
    assert_eq!(got.len(), 12, "a group of its own for each: {got:?}");
    assert_eq!(
        ids_on_exchange(&t).await,
        got,
        "nothing else made, nothing lost"
    );
    // Each lost answer settled by finding its create's group: none taken for a duplicate.
    assert_eq!(deleted(&p), 0, "{:?}", p.decisions);
    assert_eq!(p.settled_intents.len(), 12, "{:?}", p.settled_intents);
}
