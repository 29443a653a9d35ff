//! The risk core's rules, one test each, with explicit timestamps. A risk officer can read
//! this file as the table of what the daemon decides.

mod risk_support;

use kalshi_riskd::risk::engine::{
    Action, Command, DecisionKind, GroupChange, Input, OperatorCommand, RiskEngine, Snapshot,
    StreamHealth,
};
use kalshi_riskd::risk::guard::{GuardState, TripReason};
use kalshi_riskd::risk::policy::{BlindAction, KillScope, Mode};
use kalshi_riskd::risk::{Contracts, Dollars, GroupAddress, GroupId, LimitSpec, Ratio};
use risk_support::*;

fn state(h: &Harness, name: &str) -> GuardState {
    h.engine
        .strategies()
        .iter()
        .find(|s| s.policy.name == name)
        .unwrap()
        .state()
}

fn op(command: OperatorCommand) -> Input {
    Input::Operator {
        command,
        actor: "uid:1000".into(),
    }
}

#[test]
fn exceeding_a_limit_trips_and_triggers_every_group_of_the_strategy() {
    let mut h = Harness::new(
        config(vec![
            policy("mm", vec![limit("fast", 15_000, 100)]),
            policy("calm", vec![limit("fast", 15_000, 100)]),
        ]),
        2,
    );
    let out = h.fill("mm", c(100));
    assert!(triggered(&out).is_empty(), "at the limit is not over it");
    let out = h.fill("mm", Contracts::from_hundredths(1));
    assert_eq!(triggered(&out), ["g-mm-0", "g-mm-1"]);
    let trip = &decisions(&out, DecisionKind::Trip)[0];
    let ev = trip.evidence.as_ref().unwrap();
    assert_eq!(
        (ev.limit.as_str(), ev.contracts, ev.max_contracts),
        ("fast", Contracts::from_hundredths(10_001), Some(c(100)))
    );
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
    assert_eq!(
        state(&h, "calm"),
        GuardState::Active,
        "other strategies are untouched"
    );
    assert!(
        triggered(&h.fill("mm", c(50))).is_empty(),
        "a tripped strategy is not tripped twice"
    );
}

#[test]
fn each_limit_has_its_own_window() {
    let mut h = Harness::new(
        config(vec![policy(
            "mm",
            vec![limit("fast", 15_000, 100), limit("hourly", 3_600_000, 150)],
        )]),
        1,
    );
    h.fill("mm", c(90));
    h.advance(15_000);
    assert!(
        triggered(&h.fill("mm", c(50))).is_empty(),
        "fast window has drained: 50 of 100"
    );
    h.advance(15_000);
    let out = h.fill("mm", c(11)); // hourly: 151
    assert_eq!(triggered(&out), ["g-mm-0"]);
    assert_eq!(
        decisions(&out, DecisionKind::Trip)[0]
            .evidence
            .as_ref()
            .unwrap()
            .limit,
        "hourly"
    );
}

#[test]
fn notional_and_fill_count_limits_trip_too() {
    let notional = LimitSpec {
        max_contracts: None,
        max_notional: Some(Dollars::parse("10").unwrap()),
        ..limit("money", 60_000, 0)
    };
    let mut h = Harness::new(config(vec![policy("mm", vec![notional])]), 1);
    assert!(
        triggered(&h.fill_priced("mm", c(20), "0.50")).is_empty(),
        "$10.00 is at the limit"
    );
    assert_eq!(
        triggered(&h.fill_priced("mm", Contracts::from_hundredths(1), "0.50")),
        ["g-mm-0"]
    );

    let count = LimitSpec {
        max_contracts: None,
        max_fills: Some(3),
        ..limit("churn", 60_000, 0)
    };
    let mut h = Harness::new(config(vec![policy("mm", vec![count])]), 1);
    for _ in 0..3 {
        assert!(triggered(&h.fill("mm", c(1))).is_empty());
    }
    assert_eq!(triggered(&h.fill("mm", c(1))), ["g-mm-0"]);
}

#[test]
fn warnings_are_raised_at_the_warn_ratio_and_cleared_as_the_window_drains() {
    let mut h = Harness::new(
        config(vec![policy("mm", vec![limit("fast", 15_000, 100)])]),
        1,
    );
    assert!(decisions(&h.fill("mm", c(79)), DecisionKind::Warn).is_empty());
    let out = h.fill("mm", c(1));
    assert_eq!(decisions(&out, DecisionKind::Warn).len(), 1);
    assert!(h.engine.strategies()[0].is_warned());
    h.advance(14_999);
    assert!(decisions(&h.send(Input::Tick), DecisionKind::WarnCleared).is_empty());
    h.advance(1);
    assert_eq!(
        decisions(&h.send(Input::Tick), DecisionKind::WarnCleared).len(),
        1
    );
}

#[test]
fn a_fill_is_counted_once_per_trade_id() {
    let mut h = Harness::new(
        config(vec![policy("mm", vec![limit("fast", 15_000, 10)])]),
        1,
    );
    h.send(Input::OrderGroup {
        order_id: "o1".into(),
        group: Some(group("mm", 0).id),
    });
    let f = h.make_fill("o1", c(10), "0.50");
    h.send(Input::Fill(f.clone()));
    assert!(
        triggered(&h.send(Input::Fill(f))).is_empty(),
        "the duplicate adds nothing"
    );
    assert_eq!(h.engine.counters().duplicate_fills, 1);
    assert_eq!(h.engine.counters().fills, 1);
}

#[test]
fn a_fill_before_its_order_is_mapped_waits_for_a_lookup() {
    let mut h = Harness::new(
        config(vec![policy("mm", vec![limit("fast", 15_000, 10)])]),
        1,
    );
    let f1 = h.make_fill("o9", c(6), "0.50");
    let out = h.send(Input::Fill(f1));
    assert_eq!(
        commands(&out),
        [Command::LookupOrder {
            order_id: "o9".into()
        }]
    );
    let f2 = h.make_fill("o9", c(6), "0.50");
    assert!(
        commands(&h.send(Input::Fill(f2))).is_empty(),
        "one lookup per order"
    );
    let out = h.send(Input::OrderLookup {
        order_id: "o9".into(),
        group: Ok(Some(group("mm", 0).id)),
    });
    assert_eq!(
        triggered(&out),
        ["g-mm-0"],
        "both parked fills counted: 12 > 10"
    );
}

#[test]
fn fills_that_map_to_no_managed_group_are_unmapped_counted_and_recorded() {
    let mut h = Harness::new(
        config(vec![policy("mm", vec![limit("fast", 15_000, 10)])]),
        1,
    );
    h.send(Input::OrderGroup {
        order_id: "loose".into(),
        group: None,
    });
    let f = h.make_fill("loose", c(1), "0.50");
    assert_eq!(
        decisions(&h.send(Input::Fill(f)), DecisionKind::UnmappedFill).len(),
        1
    );
    h.send(Input::OrderGroup {
        order_id: "theirs".into(),
        group: Some(GroupId::new("someone-else")),
    });
    let f = h.make_fill("theirs", c(1), "0.50");
    let d = &decisions(&h.send(Input::Fill(f)), DecisionKind::UnmappedFill)[0];
    assert!(d.reason.contains("does not manage"), "{}", d.reason);
    let f = h.make_fill("lost", c(1), "0.50");
    h.send(Input::Fill(f));
    let out = h.send(Input::OrderLookup {
        order_id: "lost".into(),
        group: Err("HTTP 500".into()),
    });
    assert!(
        decisions(&out, DecisionKind::UnmappedFill)[0]
            .reason
            .contains("lookup failed")
    );
    assert_eq!(h.engine.counters().unmapped_fills, 3);
}

#[test]
fn the_account_limit_engages_the_kill_switch() {
    let mut cfg = config(vec![policy("a", vec![]), policy("b", vec![])]);
    cfg.account_limit = Some(limit("account", 15_000, 100));
    let mut h = Harness::new(cfg, 1);
    h.fill("a", c(60));
    let out = h.fill("b", c(41));
    let kill = &decisions(&out, DecisionKind::KillEngaged)[0];
    assert!(kill.reason.contains("account limit"), "{}", kill.reason);
    assert_eq!(triggered(&out), ["g-a-0", "g-b-0"]);
    assert!(h.engine.kill().is_some());
}

#[test]
fn the_kill_switch_triggers_its_scope_holds_and_is_released_only_by_release() {
    let foreign = GroupAddress {
        id: GroupId::new("not-ours"),
        subaccount: 7,
        exchange_index: 0,
    };
    for (scope, want) in [
        (KillScope::Managed, vec!["g-a-0", "g-a-1"]),
        (KillScope::Account, vec!["g-a-0", "g-a-1", "not-ours"]),
    ] {
        let mut cfg = config(vec![policy("a", vec![])]);
        cfg.kill_scope = scope;
        let mut h = Harness::new(cfg, 2);
        h.send(Input::GroupsListed(vec![
            group("a", 0),
            group("a", 1),
            foreign.clone(),
        ]));
        let out = h.send(op(OperatorCommand::Kill));
        assert_eq!(triggered(&out), want, "{scope:?}");
        // Hold: a group that turns active again is triggered again.
        let out = h.send(Input::GroupEvent {
            group: group("a", 1).id,
            change: GroupChange::Reset,
        });
        assert_eq!(triggered(&out), ["g-a-1"]);
        // Nothing but release clears it; resets are refused meanwhile.
        let out = h.send(op(OperatorCommand::Reset(None)));
        assert!(resets(&out).is_empty());
        assert_eq!(decisions(&out, DecisionKind::ResetRefused).len(), 1);
        h.send(Input::Tick);
        h.send(Input::Stream(StreamHealth::Connected));
        assert!(h.engine.kill().is_some());
        h.send(op(OperatorCommand::Release));
        assert!(h.engine.kill().is_none());
        assert!(
            triggered(&h.send(Input::GroupEvent {
                group: group("a", 1).id,
                change: GroupChange::Reset
            }))
            .is_empty()
        );
    }
}

#[test]
fn a_kill_finds_groups_created_after_the_last_listing() {
    let mut cfg = config(vec![policy("a", vec![])]);
    cfg.kill_scope = KillScope::Account;
    let mut h = Harness::new(cfg, 1);
    let out = h.send(op(OperatorCommand::Kill));
    assert!(commands(&out).contains(&Command::Reconcile));
    let late = GroupAddress {
        id: GroupId::new("late"),
        subaccount: 3,
        exchange_index: 0,
    };
    let out = h.send(Input::GroupsListed(vec![group("a", 0), late.clone()]));
    assert_eq!(triggered(&out), ["late"]);
    assert!(
        triggered(&h.send(Input::GroupsListed(vec![late]))).is_empty(),
        "triggered once per kill"
    );
}

#[test]
fn a_blind_stream_trips_strategies_that_fail_closed_and_blocks_resets() {
    let mut closed = policy("closed", vec![]);
    closed.blind = BlindAction::Trigger;
    let mut h = Harness::new(config(vec![closed, policy("open", vec![])]), 1);
    let out = h.send(Input::Stream(StreamHealth::Blind));
    assert_eq!(triggered(&out), ["g-closed-0"]);
    assert_eq!(decisions(&out, DecisionKind::Blind).len(), 1);
    assert_eq!(state(&h, "open"), GuardState::Active);
    let out = h.send(op(OperatorCommand::Reset(Some("closed".into()))));
    assert!(resets(&out).is_empty() && !decisions(&out, DecisionKind::ResetRefused).is_empty());
    let out = h.send(Input::Stream(StreamHealth::Connected));
    assert_eq!(decisions(&out, DecisionKind::StreamRestored).len(), 1);
    assert!(commands(&out).contains(&Command::Reconcile));
    assert_eq!(
        resets(&h.send(op(OperatorCommand::Reset(Some("closed".into()))))),
        ["g-closed-0"]
    );
}

#[test]
fn staying_disconnected_past_blind_after_is_blind() {
    let mut closed = policy("closed", vec![]);
    closed.blind = BlindAction::Trigger;
    let mut h = Harness::new(config(vec![closed]), 1);
    h.send(Input::Stream(StreamHealth::Disconnected));
    h.advance(9_999);
    assert!(triggered(&h.send(Input::Tick)).is_empty());
    h.send(Input::Stream(StreamHealth::Disconnected)); // still down: the clock runs from the first
    h.advance(1);
    assert_eq!(triggered(&h.send(Input::Tick)), ["g-closed-0"]);
}

#[test]
fn cooldown_resets_after_the_cooldown_on_drained_windows_at_most_n_a_day() {
    let mut p = policy("mm", vec![limit("fast", 15_000, 100)]);
    p.reset = cooldown(60_000, 0.5, 2);
    let mut h = Harness::new(config(vec![p]), 2);
    for round in 0..3 {
        let tripped_at = h.now;
        h.fill("mm", c(101));
        assert_eq!(state(&h, "mm"), GuardState::Tripped, "round {round}");
        h.at(tripped_at + 59_999);
        assert!(resets(&h.send(Input::Tick)).is_empty(), "cooldown not over");
        h.at(tripped_at + 60_000);
        let out = h.send(Input::Tick);
        if round < 2 {
            assert_eq!(resets(&out), ["g-mm-0", "g-mm-1"], "round {round}");
            assert_eq!(state(&h, "mm"), GuardState::Active);
        } else {
            assert!(
                resets(&out).is_empty(),
                "the third auto-reset within 24 h waits for an operator"
            );
        }
        h.advance(1_000);
    }
    // A day after the first auto-reset, one is allowed again.
    h.advance(24 * 3_600_000);
    assert_eq!(resets(&h.send(Input::Tick)).len(), 2);
}

#[test]
fn cooldown_waits_for_every_window_to_drain_below_the_resume_ratio() {
    let mut p = policy(
        "mm",
        vec![limit("fast", 15_000, 100), limit("slow", 600_000, 1_000)],
    );
    p.reset = cooldown(30_000, 0.5, 5);
    let mut h = Harness::new(config(vec![p]), 1);
    h.fill("mm", c(101));
    h.advance(20_000);
    h.fill("mm", c(450)); // slow: 551 of 1000, above 0.5
    h.advance(30_000);
    assert!(resets(&h.send(Input::Tick)).is_empty());
    h.advance(600_000);
    assert_eq!(resets(&h.send(Input::Tick)).len(), 1);
}

#[test]
fn no_automatic_reset_for_manual_trips_or_while_killed_or_blind() {
    let mut p = policy("mm", vec![limit("fast", 15_000, 100)]);
    p.reset = cooldown(1_000, 0.5, 5);
    let mut h = Harness::new(config(vec![p.clone()]), 1);
    h.send(op(OperatorCommand::Trigger("mm".into())));
    h.advance(100_000);
    assert!(
        resets(&h.send(Input::Tick)).is_empty(),
        "an operator's trip waits for an operator"
    );

    let mut h = Harness::new(config(vec![p.clone()]), 1);
    h.fill("mm", c(101));
    h.send(op(OperatorCommand::Kill));
    h.advance(100_000);
    assert!(resets(&h.send(Input::Tick)).is_empty(), "killed");
    h.send(op(OperatorCommand::Release));
    assert_eq!(
        resets(&h.send(Input::Tick)).len(),
        1,
        "released: the cooldown applies again"
    );

    let mut h = Harness::new(config(vec![p]), 1);
    h.fill("mm", c(101));
    h.send(Input::Stream(StreamHealth::Blind));
    h.advance(100_000);
    assert!(resets(&h.send(Input::Tick)).is_empty(), "blind");
}

#[test]
fn an_exchange_trigger_is_a_trip_with_reason_exchange() {
    let mut h = Harness::new(config(vec![policy("mm", vec![])]), 2);
    let out = h.send(Input::GroupEvent {
        group: group("mm", 1).id,
        change: GroupChange::Triggered,
    });
    let d = &decisions(&out, DecisionKind::Trip)[0];
    assert!(d.reason.starts_with("exchange"), "{}", d.reason);
    assert_eq!(d.actor, "exchange");
    assert_eq!(triggered(&out), ["g-mm-0", "g-mm-1"]);
    assert_eq!(
        h.engine.counters().trips[&("mm".to_owned(), TripReason::Exchange)],
        1
    );
    assert!(
        decisions(
            &h.send(Input::GroupEvent {
                group: group("mm", 0).id,
                change: GroupChange::Triggered
            }),
            DecisionKind::Trip
        )
        .is_empty(),
        "already tripped: a confirmation"
    );
}

#[test]
fn a_group_reset_outside_the_daemon_while_tripped_is_triggered_again() {
    let mut h = Harness::new(config(vec![policy("mm", vec![])]), 1);
    h.send(op(OperatorCommand::Trigger("mm".into())));
    let out = h.send(Input::GroupEvent {
        group: group("mm", 0).id,
        change: GroupChange::Reset,
    });
    assert_eq!(triggered(&out), ["g-mm-0"]);
    assert_eq!(decisions(&out, DecisionKind::Retrigger).len(), 1);
}

#[test]
fn shadow_mode_decides_and_records_but_sends_nothing() {
    let mut p = policy("mm", vec![limit("fast", 15_000, 10)]);
    p.mode = Mode::Shadow;
    let mut h = Harness::new(config(vec![p]), 2);
    let out = h.fill("mm", c(11));
    assert!(commands(&out).is_empty(), "{out:?}");
    assert_eq!(decisions(&out, DecisionKind::Trip).len(), 1);
    assert_eq!(
        decisions(&out, DecisionKind::Shadow).len(),
        2,
        "one would-trigger per group"
    );
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
}

#[test]
fn a_lowered_group_limit_waits_until_the_window_drains_below_it() {
    let mut h = Harness::new(config(vec![policy("mm", vec![])]), 1);
    h.fill("mm", c(300));
    let mut p = policy("mm", vec![]);
    p.group_limit = c(200);
    let out = h.send(Input::Policies(vec![p.clone()]));
    assert!(
        commands(&out).is_empty(),
        "sending 200 now would trigger a group with 300 in its window"
    );
    assert_eq!(decisions(&out, DecisionKind::LimitDeferred).len(), 1);
    h.advance(14_999);
    assert!(commands(&h.send(Input::Tick)).is_empty());
    h.advance(1);
    assert_eq!(
        commands(&h.send(Input::Tick)),
        [Command::UpdateLimit {
            group: group("mm", 0),
            limit: c(200)
        }]
    );
    // Raising applies at once.
    p.group_limit = c(900);
    assert_eq!(
        commands(&h.send(Input::Policies(vec![p]))),
        [Command::UpdateLimit {
            group: group("mm", 0),
            limit: c(900)
        }]
    );
}

#[test]
fn a_trip_is_confirmed_when_every_group_has_acknowledged_its_trigger() {
    let mut h = Harness::new(config(vec![policy("mm", vec![])]), 2);
    h.send(op(OperatorCommand::Trigger("mm".into())));
    h.advance(40);
    let ok = |n| Input::ActionDone {
        group: group("mm", n),
        action: Action::Trigger,
        result: Ok(()),
    };
    assert!(decisions(&h.send(ok(0)), DecisionKind::TripConfirmed).is_empty());
    let out = h.send(ok(1));
    assert!(
        decisions(&out, DecisionKind::TripConfirmed)[0]
            .reason
            .contains("40 ms")
    );
    assert_eq!(
        h.engine.strategies()[0].trip().unwrap().confirmed_ms,
        Some(h.now)
    );
}

#[test]
fn a_failed_reset_puts_the_trip_back() {
    let mut h = Harness::new(config(vec![policy("mm", vec![])]), 1);
    h.send(op(OperatorCommand::Trigger("mm".into())));
    h.send(op(OperatorCommand::Reset(Some("mm".into()))));
    assert_eq!(state(&h, "mm"), GuardState::Active);
    let out = h.send(Input::ActionDone {
        group: group("mm", 0),
        action: Action::Reset,
        result: Err("HTTP 500".into()),
    });
    assert_eq!(decisions(&out, DecisionKind::ResetFailed).len(), 1);
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
    assert_eq!(
        h.engine.strategies()[0].trip().unwrap().reason,
        TripReason::Manual
    );
}

#[test]
fn a_restart_restores_trips_and_the_kill_latch_and_reapplies_them() {
    let cfg = || {
        config(vec![
            policy("mm", vec![limit("fast", 15_000, 10)]),
            policy("calm", vec![]),
        ])
    };
    let mut h = Harness::new(cfg(), 1);
    h.fill("mm", c(11));
    h.send(op(OperatorCommand::Kill));
    let json = serde_json::to_string(&h.engine.snapshot()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["strategies"]["mm"]["state"], "tripped");
    assert_eq!(v["strategies"]["mm"]["trip"]["reason"], "limit");
    assert_eq!(v["strategies"]["mm"]["groups"][0]["id"], "g-mm-0");
    assert_eq!(
        v["strategies"]["mm"]["groups"][0]["contracts_limit"],
        "500.00"
    );
    assert_eq!(v["kill"]["actor"], "uid:1000");
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    let mut out = Vec::new();
    let e = RiskEngine::restore(cfg(), &snap, true, h.now + 5_000, &mut out);
    assert_eq!(
        triggered(&out),
        ["g-calm-0", "g-mm-0", "g-mm-0"],
        "trip and kill re-applied"
    );
    assert!(e.kill().is_some());
    assert_eq!(e.snapshot(), snap);
}

#[test]
fn after_an_unclean_stop_active_strategies_are_unknown_until_settled() {
    let cfg = || config(vec![policy("mm", vec![]), policy("other", vec![])]);
    let h = Harness::new(cfg(), 2);
    let snap = h.engine.snapshot();
    let mut out = Vec::new();
    let mut e = RiskEngine::restore(cfg(), &snap, false, h.now, &mut out);
    assert!(
        e.strategies()
            .iter()
            .all(|s| s.state() == GuardState::Unknown)
    );
    let mut h = Harness {
        engine: e,
        ..Harness::new(cfg(), 0)
    };
    // Never auto-reset; the exchange settles it group by group.
    h.advance(86_400_000);
    assert!(resets(&h.send(Input::Tick)).is_empty());
    h.send(Input::GroupEvent {
        group: group("mm", 0).id,
        change: GroupChange::Reset,
    });
    assert_eq!(
        state(&h, "mm"),
        GuardState::Unknown,
        "one group of two proven"
    );
    let out = h.send(Input::GroupEvent {
        group: group("mm", 1).id,
        change: GroupChange::Created,
    });
    assert_eq!(decisions(&out, DecisionKind::Settled).len(), 1);
    assert_eq!(state(&h, "mm"), GuardState::Active);
    // A triggered event settles it as a trip.
    let out = h.send(Input::GroupEvent {
        group: group("other", 1).id,
        change: GroupChange::Triggered,
    });
    assert_eq!(triggered(&out), ["g-other-0", "g-other-1"]);
    assert_eq!(state(&h, "other"), GuardState::Tripped);
    e = h.engine;
    let _ = e.snapshot();
}

/// An engine restored after an unclean stop: every strategy Unknown.
fn unknown_after_crash(cfg: impl Fn() -> kalshi_riskd::risk::policy::RiskConfig) -> Harness {
    let h = Harness::new(cfg(), 1);
    let snap = h.engine.snapshot();
    let mut out = Vec::new();
    let engine = RiskEngine::restore(cfg(), &snap, false, h.now, &mut out);
    Harness {
        engine,
        ..Harness::new(cfg(), 0)
    }
}

#[test]
fn a_breach_while_unknown_trips_exactly_as_it_would_while_active() {
    let cfg = || config(vec![policy("mm", vec![limit("fast", 15_000, 20)])]);
    let mut h = unknown_after_crash(cfg);
    assert_eq!(state(&h, "mm"), GuardState::Unknown);
    assert!(triggered(&h.fill("mm", c(20))).is_empty(), "at the limit");
    let out = h.fill("mm", c(22));
    assert_eq!(triggered(&out), ["g-mm-0"], "42 of 20 while unknown trips");
    let trip = &decisions(&out, DecisionKind::Trip)[0];
    assert_eq!(trip.strategy.as_deref(), Some("mm"));
    assert_eq!(
        trip.evidence.as_ref().unwrap().contracts,
        c(42),
        "the evidence is the window's figure"
    );
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
    let snap = h.engine.snapshot();
    assert_eq!(snap.strategies["mm"].state, GuardState::Tripped);
    assert_eq!(
        snap.strategies["mm"].trip.as_ref().unwrap().reason,
        TripReason::Limit
    );
}

#[test]
fn an_unknown_strategy_warns_and_fails_closed_when_blind() {
    let cfg = || {
        let mut p = policy("mm", vec![limit("fast", 15_000, 100)]);
        p.blind = BlindAction::Trigger;
        config(vec![p])
    };
    let mut h = unknown_after_crash(cfg);
    let out = h.fill("mm", c(90));
    assert_eq!(
        decisions(&out, DecisionKind::Warn).len(),
        1,
        "warns at 90 %"
    );
    let out = h.send(Input::Stream(StreamHealth::Blind));
    assert_eq!(triggered(&out), ["g-mm-0"]);
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
}

#[test]
fn reload_keeps_windows_of_unchanged_limits_and_retires_removed_strategies() {
    let mut h = Harness::new(
        config(vec![
            policy("mm", vec![limit("fast", 15_000, 100)]),
            policy("gone", vec![]),
        ]),
        1,
    );
    h.fill("mm", c(90));
    let out = h.send(Input::Policies(vec![
        policy(
            "mm",
            vec![limit("fast", 15_000, 100), limit("new", 60_000, 1_000)],
        ),
        policy("fresh", vec![]),
    ]));
    assert!(commands(&out).is_empty());
    let names: Vec<_> = h
        .engine
        .strategies()
        .iter()
        .map(|s| s.policy.name.clone())
        .collect();
    assert_eq!(names, ["mm", "fresh"]);
    assert!(
        h.engine.retired().contains_key("gone"),
        "a removed strategy is remembered, not forgotten"
    );
    // 90 kept in "fast": 11 more trips it.
    h.send(Input::GroupsAssigned {
        strategy: "mm".into(),
        groups: vec![group("mm", 0)],
    });
    assert_eq!(triggered(&h.fill("mm", c(11))), ["g-mm-0"]);
    let _ = Ratio::ONE;
}

#[test]
fn a_removed_strategy_that_comes_back_comes_back_as_it_left() {
    let cfg = || {
        config(vec![
            policy("mm", vec![limit("fast", 15_000, 20)]),
            policy("calm", vec![]),
        ])
    };
    let mut h = Harness::new(cfg(), 1);
    h.fill("mm", c(21));
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
    let trip = h.engine.strategies()[0].trip().cloned().unwrap();

    // Removed: retired, its record kept in the snapshot (state.json).
    let out = h.send(Input::Policies(vec![policy("calm", vec![])]));
    assert!(triggered(&out).is_empty());
    let snap = h.engine.snapshot();
    assert!(snap.strategies["mm"].retired);
    assert_eq!(snap.strategies["mm"].state, GuardState::Tripped);

    // Survives a restart, clean or not.
    let mut out = Vec::new();
    let engine = RiskEngine::restore(cfg(), &snap, false, h.now, &mut out);
    assert_eq!(
        engine.snapshot().strategies["mm"].state,
        GuardState::Tripped
    );
    let restored = RiskEngine::restore(
        config(vec![policy("calm", vec![])]),
        &snap,
        false,
        h.now,
        &mut out,
    );
    assert_eq!(restored.retired()["mm"].trip.as_ref(), Some(&trip));
    h.engine = restored;

    // Back: tripped with the same trip and group, its groups triggered again; no reset.
    let out = h.send(Input::Policies(cfg().strategies));
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
    assert_eq!(h.engine.strategies()[1].trip(), Some(&trip));
    assert_eq!(triggered(&out), ["g-mm-0"]);
    assert!(decisions(&out, DecisionKind::Reset).is_empty());
    assert!(!h.engine.snapshot().strategies["mm"].retired);
    assert!(h.engine.retired().is_empty());
}

#[test]
fn a_retired_strategy_last_seen_active_comes_back_unknown_after_an_unclean_stop() {
    let cfg = || config(vec![policy("mm", vec![]), policy("calm", vec![])]);
    let mut h = Harness::new(cfg(), 1);
    h.send(Input::Policies(vec![policy("calm", vec![])]));
    let snap = h.engine.snapshot();
    let mut out = Vec::new();
    h.engine = RiskEngine::restore(
        config(vec![policy("calm", vec![])]),
        &snap,
        false,
        h.now,
        &mut out,
    );
    h.send(Input::Policies(cfg().strategies));
    assert_eq!(
        state(&h, "mm"),
        GuardState::Unknown,
        "its groups were not watched"
    );
    assert!(triggered(&h.fill("mm", c(1))).is_empty());
}

#[test]
fn trade_ids_are_remembered_for_ten_minutes_across_generations() {
    let mut h = Harness::new(config(vec![policy("mm", vec![])]), 1);
    h.send(Input::OrderGroup {
        order_id: "o".into(),
        group: Some(group("mm", 0).id),
    });
    let fill = |h: &mut Harness, trade: &str| {
        let mut f = h.make_fill("o", c(1), "0.50");
        f.trade_id = trade.into();
        h.send(Input::Fill(f));
    };
    let uuid = "d91b6a5e-6f3c-4b2a-9c1d-0e8f7a6b5c4d";
    fill(&mut h, uuid);
    h.advance(6 * 60_000);
    fill(&mut h, "5e0c3b1a-0000-4000-8000-000000000001"); // rotates the generations
    h.advance(3 * 60_000);
    fill(&mut h, uuid); // 9 minutes later: still a duplicate
    assert_eq!(
        (
            h.engine.counters().fills,
            h.engine.counters().duplicate_fills
        ),
        (2, 1)
    );
    fill(&mut h, &uuid.to_uppercase()); // the same UUID in capitals is the same trade
    assert_eq!(h.engine.counters().duplicate_fills, 2);
    h.advance(10 * 60_000);
    fill(&mut h, "5e0c3b1a-0000-4000-8000-000000000002");
    h.advance(60_000);
    fill(&mut h, uuid); // 20 minutes: forgotten, counted again (the documented bound)
    assert_eq!(h.engine.counters().fills, 4);
}

#[test]
fn a_reload_keeps_what_it_learnt_of_orders_groups() {
    let mut h = Harness::new(
        config(vec![
            policy("gone", vec![]),
            policy("mm", vec![limit("fast", 15_000, 100)]),
        ]),
        1,
    );
    let out = h.send(Input::OrderGroup {
        order_id: "o-known".into(),
        group: Some(group("mm", 0).id),
    });
    assert!(commands(&out).is_empty());
    // "gone" leaves: "mm" is now the first strategy, its group unchanged.
    h.send(Input::Policies(vec![policy(
        "mm",
        vec![limit("fast", 15_000, 100)],
    )]));
    let fill = h.make_fill("o-known", c(101), "0.50");
    let out = h.send(Input::Fill(fill));
    assert!(
        !commands(&out)
            .iter()
            .any(|c| matches!(c, Command::LookupOrder { .. })),
        "a known order's fill is not parked behind a lookup after a reload"
    );
    assert_eq!(
        triggered(&out),
        ["g-mm-0"],
        "and it counts at once, to its own strategy"
    );
}

#[test]
fn a_known_order_counted_before_a_reload_counts_to_its_own_strategy_after_it() {
    let fast = || vec![limit("fast", 15_000, 100)];
    let mut h = Harness::new(
        config(vec![policy("gone", vec![]), policy("mm", fast())]),
        1,
    );
    h.send(Input::OrderGroup {
        order_id: "o-known".into(),
        group: Some(group("mm", 0).id),
    });
    let fill = h.make_fill("o-known", c(1), "0.50");
    assert!(triggered(&h.send(Input::Fill(fill))).is_empty());
    // The strategies move: "mm" goes from second to first, a new one comes after it.
    h.send(Input::Policies(vec![
        policy("mm", fast()),
        policy("new", fast()),
    ]));
    let fill = h.make_fill("o-known", c(100), "0.50");
    let out = h.send(Input::Fill(fill));
    assert_eq!(triggered(&out), ["g-mm-0"], "1 + 100 in mm's window");
    assert_eq!(state(&h, "new"), GuardState::Active);
}

#[test]
fn a_strategy_that_comes_back_gets_its_known_orders_back() {
    let mm = || policy("mm", vec![limit("fast", 15_000, 100)]);
    let mut h = Harness::new(config(vec![mm(), policy("calm", vec![])]), 1);
    h.send(Input::OrderGroup {
        order_id: "o-known".into(),
        group: Some(group("mm", 0).id),
    });
    h.send(Input::Policies(vec![policy("calm", vec![])]));
    h.send(Input::Policies(vec![mm(), policy("calm", vec![])]));
    h.send(Input::GroupsAssigned {
        strategy: "mm".into(),
        groups: vec![group("mm", 0)],
    });
    let fill = h.make_fill("o-known", c(101), "0.50");
    let out = h.send(Input::Fill(fill));
    assert!(
        decisions(&out, DecisionKind::UnmappedFill).is_empty(),
        "its group is managed again, so its orders' fills are not unmapped"
    );
    assert_eq!(triggered(&out), ["g-mm-0"]);
}

#[test]
fn a_trip_while_a_reset_is_in_flight_stands_when_that_reset_fails() {
    let mut h = Harness::new(
        config(vec![policy("mm", vec![limit("fast", 15_000, 100)])]),
        1,
    );
    h.fill("mm", c(101));
    let first = h.engine.strategies()[0].trip().cloned().unwrap();
    h.advance(1_000);
    h.send(op(OperatorCommand::Reset(Some("mm".into()))));
    assert_eq!(state(&h, "mm"), GuardState::Active);
    // Still over the limit: the next fill trips it again while the reset is on its way.
    h.advance(1_000);
    assert_eq!(triggered(&h.fill("mm", c(1))), ["g-mm-0"]);
    let second = h.engine.strategies()[0].trip().cloned().unwrap();
    assert!(second.at_ms > first.at_ms);
    h.send(Input::ActionDone {
        group: group("mm", 0),
        action: Action::Reset,
        result: Err("503".into()),
    });
    assert_eq!(state(&h, "mm"), GuardState::Tripped);
    assert_eq!(
        h.engine.strategies()[0].trip(),
        Some(&second),
        "the newer trip is the one on record, not the one the failed reset replaced"
    );
}

/// Cluster mode: the kill latch is shared through etcd. Until the shared latch has been read,
/// and whenever it cannot be, nothing is reset (manually or automatically) and nothing is
/// released: both would need it. Triggers never wait for it.
#[test]
fn in_cluster_mode_resets_and_releases_wait_for_the_shared_latch() {
    use kalshi_riskd::risk::engine::ClusterInput;
    let mut p = policy("mm", vec![limit("fast", 15_000, 100)]);
    p.reset = cooldown(1_000, 0.5, 5);
    let mut cfg = config(vec![p]);
    cfg.cluster = true;
    let mut h = Harness::new(cfg, 1);
    let out = h.fill("mm", c(101));
    assert_eq!(
        commands(&out).len(),
        1,
        "a breach triggers before etcd is read"
    );
    h.advance(100_000);
    assert!(
        resets(&h.send(Input::Tick)).is_empty(),
        "no automatic reset unread"
    );
    let out = h.send(op(OperatorCommand::Reset(Some("mm".into()))));
    let refused = decisions(&out, DecisionKind::ResetRefused);
    assert!(refused[0].reason.contains("etcd"), "{}", refused[0].reason);

    let out = h.send(Input::Cluster(ClusterInput::Readable(true)));
    assert_eq!(decisions(&out, DecisionKind::LatchReadable).len(), 1);
    assert_eq!(
        resets(&h.send(Input::Tick)).len(),
        1,
        "read: the cooldown applies"
    );

    h.send(op(OperatorCommand::Kill));
    h.send(Input::Cluster(ClusterInput::Readable(false)));
    let out = h.send(op(OperatorCommand::Release));
    assert_eq!(decisions(&out, DecisionKind::ReleaseRefused).len(), 1);
    assert!(
        h.engine.kill().is_some(),
        "a release needs the shared latch"
    );
}

/// Cluster mode: a peer's engagement engages this member (and triggers its scope); a release
/// read from etcd releases only an engagement etcd has held, so one made while etcd was out of
/// reach outlives a release that never saw it.
#[test]
fn in_cluster_mode_a_shared_release_releases_only_what_etcd_held() {
    use kalshi_riskd::risk::engine::ClusterInput;
    use kalshi_riskd::risk::kill::KillRecord;
    let mut cfg = config(vec![policy("mm", vec![])]);
    cfg.cluster = true;
    let mut h = Harness::new(cfg, 2);
    h.send(Input::Cluster(ClusterInput::Readable(true)));
    let peer = KillRecord {
        at_ms: 1,
        actor: "signal@b".into(),
        reason: "kill switch".into(),
        evidence: None,
        shared: true,
    };
    let out = h.send(Input::Cluster(ClusterInput::Engaged(peer)));
    assert_eq!(decisions(&out, DecisionKind::KillEngaged).len(), 1);
    assert_eq!(commands(&out).len(), 2, "every group in scope triggered");
    let out = h.send(Input::Cluster(ClusterInput::Released {
        actor: "uid:1000@b".into(),
    }));
    assert_eq!(
        decisions(&out, DecisionKind::KillReleased)[0].actor,
        "uid:1000@b"
    );
    assert!(h.engine.kill().is_none());

    // Engaged here, not yet held by etcd: a release read from etcd does not cover it.
    h.send(op(OperatorCommand::Kill));
    let out = h.send(Input::Cluster(ClusterInput::Released {
        actor: "uid:1000@b".into(),
    }));
    assert!(decisions(&out, DecisionKind::KillReleased).is_empty());
    assert!(h.engine.kill().is_some());
    // Once etcd holds it, it is shared, and a later release covers it.
    let out = h.send(Input::Cluster(ClusterInput::Shared));
    assert_eq!(decisions(&out, DecisionKind::KillShared).len(), 1);
    assert!(h.engine.kill().is_some_and(|k| k.shared));
    h.send(Input::Cluster(ClusterInput::Released {
        actor: "uid:1000@b".into(),
    }));
    assert!(h.engine.kill().is_none());
}

/// Cluster mode: the account limit is the leader's to act on (every member counts the account's
/// fills, so a new leader starts with a full window); a follower's breach engages nothing.
#[test]
fn in_cluster_mode_only_the_leader_acts_on_the_account_limit() {
    use kalshi_riskd::risk::engine::ClusterInput;
    let mut cfg = config(vec![policy("a", vec![])]);
    cfg.account_limit = Some(limit("account", 15_000, 100));
    cfg.cluster = true;
    let mut h = Harness::new(cfg, 1);
    h.send(Input::Cluster(ClusterInput::Readable(true)));
    h.send(Input::Cluster(ClusterInput::AccountLimit(false)));
    let out = h.fill("a", c(101));
    assert!(
        decisions(&out, DecisionKind::KillEngaged).is_empty(),
        "a follower"
    );
    assert!(h.engine.kill().is_none());
    h.send(Input::Cluster(ClusterInput::AccountLimit(true)));
    let out = h.fill("a", c(1));
    assert_eq!(
        decisions(&out, DecisionKind::KillEngaged).len(),
        1,
        "the leader now: the window it counted all along is over the limit"
    );
}

/// Cluster mode: a peer `p` (member `b`) with two groups and a 100-contract limit, as this
/// member's core sees it; `guarded` when `b` is lost and this member leads.
fn peer_setup(owner_lost: kalshi_riskd::risk::policy::LostAction) -> Harness {
    use kalshi_riskd::risk::engine::ClusterInput;
    let mut cfg = config(vec![policy("a", vec![])]);
    cfg.cluster = true;
    let mut h = Harness::new(cfg, 1);
    h.send(Input::Cluster(ClusterInput::Readable(true)));
    let groups = vec![group("p", 0), group("p", 1)];
    h.send(Input::Cluster(ClusterInput::PeerGroups(
        groups
            .iter()
            .map(|g| (g.id.clone(), "b".to_owned()))
            .collect(),
    )));
    let mut p = policy("p", vec![limit("fast", 15_000, 100)]);
    p.owner_lost = owner_lost;
    h.peer = Some((p, groups));
    h
}

fn peers(h: &mut Harness, guarded: bool) -> Vec<kalshi_riskd::risk::engine::Output> {
    use kalshi_riskd::risk::engine::{ClusterInput, PeerStrategy};
    let (policy, groups) = h.peer.clone().unwrap();
    h.send(Input::Cluster(ClusterInput::Peers(vec![PeerStrategy {
        member: "b".into(),
        policy,
        groups,
        guarded,
    }])))
}

/// Every member counts a peer's fills into a mirror of its windows, and acts on nothing while
/// the owner lives; the leader that takes over a lost owner's strategy ("guard") starts from
/// that full window, and trips it on a breach, triggering the owner's groups (never ours).
#[test]
fn a_lost_members_strategy_is_guarded_from_a_window_counted_all_along() {
    use kalshi_riskd::risk::policy::LostAction;
    let mut h = peer_setup(LostAction::Guard);
    peers(&mut h, false);
    let out = h.fill("p", c(101));
    assert!(triggered(&out).is_empty(), "the owner guards it: {out:?}");
    assert!(decisions(&out, DecisionKind::UnmappedFill).is_empty());
    assert_eq!(h.engine.counters().peer_fills, 1);
    h.advance(1_000);
    let out = peers(&mut h, true);
    assert_eq!(decisions(&out, DecisionKind::Takeover).len(), 1);
    assert_eq!(
        triggered(&out),
        ["g-p-0", "g-p-1"],
        "the window it counted all along is over the limit"
    );
    let trip = decisions(&out, DecisionKind::Trip);
    assert_eq!(trip[0].strategy.as_deref(), Some("p"));
    assert!(trip[0].evidence.is_some());
    assert_eq!(h.engine.mirrors()["p"].guard.state(), GuardState::Tripped);
    assert!(triggered(&h.fill("p", c(50))).is_empty(), "tripped once");
}

#[test]
fn a_guarded_strategy_trips_on_a_breach_after_the_takeover() {
    use kalshi_riskd::risk::policy::LostAction;
    let mut h = peer_setup(LostAction::Guard);
    peers(&mut h, false);
    h.fill("p", c(60));
    let out = peers(&mut h, true);
    assert!(
        triggered(&out).is_empty(),
        "guard only: nothing exceeded yet"
    );
    let out = h.fill("p", c(41));
    assert_eq!(triggered(&out), ["g-p-0", "g-p-1"]);
    assert_eq!(
        h.engine.counters().trips[&("p".to_owned(), TripReason::Limit)],
        1
    );
    // Its groups reset outside while tripped are triggered again; the kill switch covers them.
    let out = h.send(Input::GroupEvent {
        group: group("p", 1).id,
        change: GroupChange::Reset,
    });
    assert_eq!(decisions(&out, DecisionKind::Retrigger).len(), 1);
    assert_eq!(triggered(&out), ["g-p-0", "g-p-1"]);
}

/// The kill switch covers a lost member's groups guarded here, whatever its scope, and holds
/// them; the owner's groups are not this member's to touch otherwise.
#[test]
fn the_kill_switch_covers_and_holds_the_groups_guarded_for_a_lost_member() {
    use kalshi_riskd::risk::policy::LostAction;
    let mut h = peer_setup(LostAction::Guard);
    peers(&mut h, false);
    let out = h.send(op(OperatorCommand::Kill));
    assert_eq!(triggered(&out), ["g-a-0"], "the owner lives: not ours");
    peers(&mut h, true);
    let out = h.send(op(OperatorCommand::Kill));
    assert_eq!(triggered(&out), ["g-a-0", "g-p-0", "g-p-1"]);
    let out = h.send(Input::GroupEvent {
        group: group("p", 1).id,
        change: GroupChange::Reset,
    });
    assert_eq!(decisions(&out, DecisionKind::Retrigger).len(), 1);
    assert_eq!(triggered(&out), ["g-p-1"]);
}

/// The policy's default fails closed: the lost owner's groups are triggered at the takeover.
#[test]
fn a_lost_owners_groups_are_triggered_at_once_when_its_policy_says_so() {
    use kalshi_riskd::risk::policy::LostAction;
    let mut h = peer_setup(LostAction::Trigger);
    peers(&mut h, false);
    let out = peers(&mut h, true);
    assert_eq!(triggered(&out), ["g-p-0", "g-p-1"]);
    assert_eq!(
        h.engine.mirrors()["p"].guard.trip().unwrap().reason,
        TripReason::OwnerLost
    );
    // The owner returns: the strategy is handed back, and nothing here acts on it any more.
    let out = peers(&mut h, false);
    assert_eq!(decisions(&out, DecisionKind::Handback).len(), 1);
    assert_eq!(h.engine.mirrors()["p"].guard.state(), GuardState::Active);
    let out = h.send(Input::GroupEvent {
        group: group("p", 0).id,
        change: GroupChange::Reset,
    });
    assert!(triggered(&out).is_empty(), "its owner's again: {out:?}");
}

/// The owner takes back a trip its guard made (with its time, so a cooldown counts from it);
/// a strategy already tripped keeps its own trip. A new guard applies an earlier guard's trip.
#[test]
fn a_handed_trip_goes_back_to_its_owner_and_to_any_later_guard() {
    use kalshi_riskd::risk::engine::{ClusterInput, HandedTrip};
    use kalshi_riskd::risk::guard::Trip;
    use kalshi_riskd::risk::policy::LostAction;
    let trip = |strategy: &str| HandedTrip {
        strategy: strategy.into(),
        by: "c".into(),
        owner: "x".into(),
        trip: Trip {
            reason: TripReason::Limit,
            at_ms: 900_000,
            actor: "daemon".into(),
            detail: "limit fast exceeded".into(),
            evidence: None,
            confirmed_ms: Some(900_010),
        },
    };
    let mut h = peer_setup(LostAction::Guard);
    let out = h.send(Input::Cluster(ClusterInput::HandedTrips(vec![trip("a")])));
    assert_eq!(triggered(&out), ["g-a-0"]);
    assert_eq!(decisions(&out, DecisionKind::Handback).len(), 1);
    let s = &h.engine.strategies()[0];
    let t = s.trip().unwrap();
    assert_eq!((t.at_ms, t.actor.as_str()), (900_000, "daemon@c"));
    assert_eq!(t.confirmed_ms, None, "confirmed again by its own Triggers");
    let out = h.send(Input::Cluster(ClusterInput::HandedTrips(vec![trip("a")])));
    assert!(
        triggered(&out).is_empty(),
        "already tripped: its trip stands"
    );

    // A later guard of `p` (this member, taking over from a guard that was lost too).
    h.send(Input::Cluster(ClusterInput::HandedTrips(vec![trip("p")])));
    peers(&mut h, false);
    assert_eq!(h.engine.mirrors()["p"].guard.state(), GuardState::Active);
    let out = peers(&mut h, true);
    assert_eq!(triggered(&out), ["g-p-0", "g-p-1"]);
    assert_eq!(h.engine.mirrors()["p"].guard.trip().unwrap().at_ms, 900_000);
}

#[test]
fn the_periodic_sweep_reads_on_from_where_the_last_answered_sweep_left_off() {
    use kalshi_riskd::risk::engine::{SWEEP_EVERY_MS, SWEEP_OVERLAP_MS, SWEEP_REASON};
    let mut h = Harness::new(
        config(vec![policy("a", vec![limit("day", 86_400_000, 1_000_000)])]),
        1,
    );
    h.send(Input::Stream(StreamHealth::Connected));
    h.send(Input::Tick);
    let sweep = |h: &mut Harness| {
        h.send(Input::Tick).iter().find_map(|o| match o {
            kalshi_riskd::risk::engine::Output::Command(Command::Sweep { since_ms }) => {
                Some(*since_ms)
            }
            _ => None,
        })
    };
    let answer = |h: &mut Harness, since_ms: i64| {
        h.send(Input::Backfill {
            fills: vec![],
            since_ms,
            reason: SWEEP_REASON.into(),
        });
    };
    // Fills flow all along: one a second.
    let flow = |h: &mut Harness, ms: i64| {
        for _ in 0..ms / 1_000 {
            h.advance(1_000);
            h.fill("a", Contracts::from_whole(1));
        }
    };
    flow(&mut h, SWEEP_EVERY_MS);
    // The first: from three periods before the start, the last fill being recent.
    let first = sweep(&mut h).expect("a sweep every period");
    assert_eq!(first, h.now - SWEEP_EVERY_MS - 3 * SWEEP_EVERY_MS);
    let seen = h.now;
    answer(&mut h, first);
    flow(&mut h, SWEEP_EVERY_MS);
    // The next reads one period and the overlap, not the four periods it used to.
    let second = sweep(&mut h).unwrap();
    assert_eq!(second, seen - SWEEP_OVERLAP_MS);
    let unanswered = h.now;
    // Unanswered (its read failed): the one after reads from the same place again.
    flow(&mut h, SWEEP_EVERY_MS);
    let third = sweep(&mut h).unwrap();
    assert_eq!(third, seen - SWEEP_OVERLAP_MS);
    // Its answer moves the start only as far as the oldest unanswered sweep had seen: the
    // answer may be the older one's, still reading when the third was asked.
    answer(&mut h, third);
    flow(&mut h, SWEEP_EVERY_MS);
    assert_eq!(sweep(&mut h).unwrap(), unanswered - SWEEP_OVERLAP_MS);
}

#[test]
fn where_not_every_group_can_be_armed_the_tightest_strategies_come_first() {
    // The fewest contracts that could breach each: 1,000,000; 1; 50; $0.30 at $1 a contract at
    // most = 0.3; 20 fills of 0.01 contract = 0.2.
    let mut notional = limit("money", 15_000, 1);
    (notional.max_contracts, notional.max_notional) = (None, Some(Dollars::parse("0.30").unwrap()));
    let mut fills = limit("count", 15_000, 1);
    (fills.max_contracts, fills.max_fills) = (None, Some(20));
    let h = Harness::new(
        config(vec![
            policy("loose", vec![limit("hour", 3_600_000, 1_000_000)]),
            policy("one", vec![limit("fast", 15_000, 1)]),
            policy(
                "fifty",
                vec![limit("fast", 15_000, 50), limit("hour", 3_600_000, 500)],
            ),
            policy("money", vec![notional]),
            policy("count", vec![fills]),
        ]),
        2,
    );
    let order: Vec<&str> = h
        .engine
        .groups_tightest_first()
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "g-count-0",
            "g-count-1",
            "g-money-0",
            "g-money-1",
            "g-one-0",
            "g-one-1",
            "g-fifty-0",
            "g-fifty-1",
            "g-loose-0",
            "g-loose-1"
        ]
    );
}
