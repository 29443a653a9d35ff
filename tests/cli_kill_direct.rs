//! `kalshi-riskd kill --direct`, the break-glass kill, with the real binary against the
//! simulator: with the daemon down it triggers every group on the account (its own and others,
//! in every subaccount) and leaves the latch in the daemon's files, which the daemon holds when
//! it comes back; with the daemon up it also engages the daemon's own kill switch; a group it
//! cannot trigger is named and the exit code says so.

mod support;

use serde_json::json;
use support::TestSim;
use support::daemon::{cli, group_of, setup, start, stop};

const CALM: &str = "[group]\ncontracts_limit = 100\n";

async fn cli_async(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let (dir, args) = (
        dir.to_owned(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&dir, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_daemon_down_it_triggers_every_group_and_the_daemon_comes_back_killed() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[("calm.toml", CALM)],
        "\n[kill]\nscope = \"managed\"\n",
    );
    let d = start(dir.path()).await;
    let ours = group_of(&d.state(), "calm");
    assert_eq!(stop(d).await, Some(0));
    // Groups the daemon never made, in two other subaccounts.
    let others = [t.create_group(50, 3).await, t.create_group(50, 7).await];

    let (code, out, err) = cli_async(dir.path(), &["kill", "--direct"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("3 group(s) triggered"), "{out}");
    assert!(out.contains("no daemon answered"), "{out}");
    for g in others.iter().chain([&ours]) {
        assert_eq!(t.group_state(g).await["triggered"], true, "{g}");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/state.json")).unwrap())
            .unwrap();
    assert!(
        state["kill"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("cli --direct uid:")),
        "{state}"
    );
    let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "kill_engaged");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 group(s) triggered, 0 failed")),
        "{last}"
    );

    // The daemon comes back with the latch engaged and refuses resets until released.
    let d = start(dir.path()).await;
    let (code, out, _) = cli_async(dir.path(), &["status", "--json"]).await;
    assert_eq!(code, Some(6), "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(status["kill"].is_object(), "{status}");
    let (code, _, err) = cli_async(dir.path(), &["reset", "calm"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("kill switch"), "{err}");
    let (code, _, _) = cli_async(dir.path(), &["release"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_daemon_up_it_also_engages_the_daemons_kill_switch() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[("calm.toml", CALM)],
        "\n[kill]\nscope = \"managed\"\n",
    );
    let d = start(dir.path()).await;
    let other = t.create_group(50, 2).await;
    let (code, out, err) = cli_async(dir.path(), &["kill", "--direct"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("the daemon answered"), "{out}");
    assert_eq!(t.group_state(&other).await["triggered"], true);
    let state = d.until_state("killed", |s| s["kill"].is_object());
    assert!(
        state["kill"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("uid:")),
        "the daemon's own latch, engaged by the caller: {state}"
    );
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_it_cannot_trigger_is_named_and_the_exit_code_says_so() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let good = t.create_group(50, 0).await;
    let bad = t.create_group(50, 4).await;
    // Every Trigger of `bad` fails, whatever the retries.
    t.set_faults(json!({"error_rate": 1.0, "error_path": format!("/trade-api/v2/portfolio/order_groups/{bad}/trigger")}))
        .await;
    let (code, out, err) = cli_async(dir.path(), &["kill", "--direct"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains(&format!("group {bad} (subaccount 4) NOT triggered")),
        "{err}"
    );
    assert!(out.contains("1 group(s) triggered"), "{out}");
    assert_eq!(t.group_state(&good).await["triggered"], true);
    // The kill is still recorded, with what failed.
    let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap();
    assert!(audit.contains("1 group(s) triggered, 1 failed"), "{audit}");
}
