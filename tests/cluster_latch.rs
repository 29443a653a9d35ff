//! Cluster mode against a real etcd (Debian's `etcd-server`, started here on loopback ports) and
//! two real daemons on one simulated account: the shared kill latch. Needs the `cluster`
//! feature and `/usr/bin/etcd` (or `ETCD_BIN`): `cargo test --features cluster --test
//! cluster_latch`.
//!
//! Each daemon's kill scope is `managed`, so a member's groups are triggered only by its own
//! latch: a peer's groups triggered means the latch reached the peer.
#![cfg(feature = "cluster")]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use support::daemon::{Daemon, cli, get, group_of, sample, setup};
use support::etcd::{Etcd, EtcdCluster};
use support::{PATIENCE, TestSim};

const ALPHA: &str = "subaccount = 0\n[group]\ncontracts_limit = 100\n";
const BETA: &str = "subaccount = 1\n[group]\ncontracts_limit = 100\n";

/// A daemon's config dir for member `member` of cluster `name` on etcd `etcd`.
fn member(
    t: &TestSim,
    etcd: &Etcd,
    name: &str,
    member: &str,
    policy: (&str, &str),
) -> tempfile::TempDir {
    member_with(t, etcd, name, member, policy, "")
}

/// [`member`] with more config (`extra`, TOML).
fn member_with(
    t: &TestSim,
    etcd: &Etcd,
    name: &str,
    member: &str,
    policy: (&str, &str),
    extra: &str,
) -> tempfile::TempDir {
    setup(
        t,
        &[policy],
        &format!(
            "\n[kill]\nscope = \"managed\"\n\n[cluster]\nendpoints = [\"{}\"]\nname = \"{name}\"\nmember = \"{member}\"\nlease_ttl = \"2s\"\n{extra}",
            etcd.url()
        ),
    )
}

async fn scrape(d: &Daemon) -> String {
    get(&d.metrics_addr(), "/metrics").await.1
}

/// Waits (bounded) until the daemon's metric `series` has `value`.
async fn until_metric(d: &Daemon, series: &str, value: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = scrape(d).await;
        if sample(&s, series) == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never {value}:\n{s}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_triggered(t: &TestSim, group: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        if t.group_state(group).await["triggered"] == true {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: {group} never triggered"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn kill_engaged(state: &Value) -> bool {
    !state["kill"].is_null()
}

async fn start(dir: &Path) -> Daemon {
    support::daemon::start(dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_on_one_member_engages_every_member_and_a_release_anywhere_releases_all() {
    let etcd = Etcd::start();
    let t = TestSim::start().await;
    let a_dir = member(&t, &etcd, "acct", "a", ("alpha.toml", ALPHA));
    // beta resets itself a second after a trip, once its one-second window has drained.
    let beta = "subaccount = 1\n[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"1s\"\nmax_contracts = 5\n[reset]\nmode = \"cooldown\"\ncooldown = \"1s\"\n";
    let b_dir = member(&t, &etcd, "acct", "b", ("beta.toml", beta));
    // a registers first: it is the leader.
    let a = start(a_dir.path()).await;
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    let b = start(b_dir.path()).await;
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    until_metric(&a, "kalshi_riskd_cluster_leader", 1.0).await;
    until_metric(&b, "kalshi_riskd_cluster_leader", 0.0).await;
    until_metric(&b, "kalshi_riskd_cluster_members", 2.0).await;
    let beta_group = group_of(&b.state(), "beta");
    let alpha_group = group_of(&a.state(), "alpha");

    // A fill in b's group is b's: counted there, not an unmapped fill on a.
    until_metric(&a, "kalshi_riskd_cluster_members", 2.0).await;
    b.until_read_after_start();
    a.until_read_after_start();
    let (status, body) = t
        .order_in("KXSIM-26NOV23-T1", Some(&beta_group), "3", 1)
        .await;
    assert!(status.is_success(), "{body}");
    until_metric(&b, "kalshi_riskd_fills_total{strategy=\"beta\"}", 1.0).await;
    until_metric(&a, "kalshi_riskd_cluster_peer_fills_total", 1.0).await;
    assert!(
        !a.audit().iter().any(|v| v["event"] == "unmapped_fill"),
        "{:#?}",
        a.audit()
    );

    // SIGUSR1 on a: a's groups by a, b's by b once the latch reaches it.
    a.signal("-USR1");
    let at_a = until_triggered(&t, &alpha_group, "a's own kill").await;
    let at_b = until_triggered(&t, &beta_group, "the kill reaching b").await;
    eprintln!("kill on a: a's group triggered after {at_a:?}, b's after {at_b:?}");
    let engaged = b.until_state("engaged through the cluster", kill_engaged);
    assert!(
        engaged["kill"]["actor"].as_str().unwrap().ends_with("@a"),
        "{engaged}"
    );
    assert_eq!(engaged["kill"]["shared"], true);
    a.until_state("shared", |s| s["kill"]["shared"] == true);

    // A reset on b is refused while the shared latch is engaged.
    let (code, out, err) = cli(b_dir.path(), &["reset", "beta"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("kill switch is engaged"), "{err}");

    // Status on b shows the cluster.
    let (code, out, err) = cli(b_dir.path(), &["status"]);
    assert_eq!(code, Some(6), "{out}{err}");
    assert!(
        out.contains(
            "cluster acct as b: etcd ok; members a, b (leader a); shared latch engaged by signal@a"
        ),
        "{out}"
    );
    assert!(
        out.contains("  member a guards: alpha\n  member b guards: beta\n"),
        "{out}"
    );

    // A release on b releases a too.
    let (code, out, err) = cli(b_dir.path(), &["release"]);
    assert_eq!(code, Some(0), "{out}{err}");
    b.until_state("released", |s| s["kill"].is_null());
    a.until_state("released through the cluster", |s| s["kill"].is_null());
    let released = a.until_audit("the release from b", |v| {
        v["event"] == "kill_released" && v["actor"].as_str().is_some_and(|x| x.ends_with("@b"))
    });
    assert!(
        released["reason"].as_str().unwrap().contains("signal"),
        "{released}"
    );

    // A cooldown reset waits for the release too: beta trips on its own limit on b, a engages
    // the latch again, and b's cooldown passes (and its window drains) with the latch engaged.
    let (code, out, err) = cli(b_dir.path(), &["reset", "beta"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let deadline = Instant::now() + PATIENCE;
    while t.group_state(&beta_group).await["triggered"] == true {
        assert!(Instant::now() < deadline, "beta's group never reset");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = t
        .order_in("KXSIM-26NOV23-T1", Some(&beta_group), "6", 1)
        .await;
    assert!(status.is_success(), "{body}");
    until_triggered(&t, &beta_group, "beta's own limit").await;
    b.until_state("beta tripped", |s| {
        s["strategies"]["beta"]["state"] == "tripped"
    });
    a.signal("-USR1");
    b.until_state("engaged again through the cluster", |s| {
        s["kill"]["shared"] == true
    });
    let auto_reset = |v: &Value| v["event"] == "reset" && v["actor"] == "daemon";
    // Waiting is the point: the cooldown (1 s) and the window (1 s) pass, and nothing resets.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!b.audit().iter().any(auto_reset), "{:#?}", b.audit());
    assert_eq!(b.state()["strategies"]["beta"]["state"], "tripped");
    // Released: the cooldown that was held back resets beta.
    let (code, out, err) = cli(a_dir.path(), &["release"]);
    assert_eq!(code, Some(0), "{out}{err}");
    b.until_audit("beta's cooldown reset after the release", auto_reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_gone_members_still_trigger_refuse_resets_and_converge_when_it_returns() {
    let mut etcd = Etcd::start();
    let t = TestSim::start().await;
    let a_dir = member(&t, &etcd, "acct2", "a", ("alpha.toml", ALPHA));
    let b_dir = member(&t, &etcd, "acct2", "b", ("beta.toml", BETA));
    let a = start(a_dir.path()).await;
    let b = start(b_dir.path()).await;
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    let alpha_group = group_of(&a.state(), "alpha");
    let beta_group = group_of(&b.state(), "beta");
    // Something for b to reset: its strategy tripped by hand.
    let trip = Command::new("curl")
        .args(["-fsS", "-X", "POST", "--unix-socket"])
        .arg(b_dir.path().join("admin.sock"))
        .arg("http://localhost/v1/strategies/beta/trigger")
        .output()
        .unwrap();
    assert!(trip.status.success(), "{trip:?}");
    until_triggered(&t, &beta_group, "b's manual trigger").await;

    etcd.kill();
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 0.0).await;
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 0.0).await;
    b.until_audit("the latch unreadable", |v| v["event"] == "latch_unreadable");

    // Resets need the shared latch: refused.
    let (code, out, err) = cli(b_dir.path(), &["reset", "beta"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("etcd is out of reach"), "{err}");
    // A kill is not delayed: a's groups are triggered with etcd gone.
    a.signal("-USR1");
    let took = until_triggered(&t, &alpha_group, "a's kill with etcd gone").await;
    eprintln!("kill on a with etcd gone: a's group triggered after {took:?}");
    let state = a.until_state("engaged", kill_engaged);
    assert_eq!(state["kill"]["shared"], Value::Null, "{state}");
    // A release needs etcd too.
    let (code, out, err) = cli(a_dir.path(), &["release"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("etcd is out of reach"), "{err}");
    assert!(!b.log().contains("panicked"));

    // etcd returns: a publishes its engagement, b engages from it.
    let back = Instant::now();
    etcd.restart();
    b.until_state("engaged after etcd returned", kill_engaged);
    eprintln!("convergence after etcd returned: {:?}", back.elapsed());
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    until_metric(&b, "kalshi_riskd_cluster_latch_engaged", 1.0).await;
    a.until_state("shared", |s| s["kill"]["shared"] == true);

    // etcd keeps the members' old leases for one `lease_ttl` after it returns: a member must be
    // registered again by then, or the others take it for lost (and trigger its strategies).
    // Waiting is the point here: nothing may happen in that time.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(back.elapsed())).await;
    for (d, name) in [(&a, "a"), (&b, "b")] {
        let s = scrape(d).await;
        assert_eq!(
            sample(&s, "kalshi_riskd_cluster_members_lost"),
            Some(0.0),
            "{name} took a peer for lost after etcd returned:\n{}",
            d.log()
        );
        assert_eq!(sample(&s, "kalshi_riskd_cluster_members"), Some(2.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_claimed_by_two_members_is_reported_by_both() {
    let etcd = Etcd::start();
    let t = TestSim::start().await;
    let a_dir = member(&t, &etcd, "acct3", "a", ("alpha.toml", ALPHA));
    // c also carries an [account] limit that a does not: a mismatch, reported too.
    let c_dir = member_with(
        &t,
        &etcd,
        "acct3",
        "c",
        ("alpha.toml", BETA),
        "\n[account]\nmax_contracts = 10\n",
    );
    let a = start(a_dir.path()).await;
    let c = start(c_dir.path()).await;
    until_metric(&a, "kalshi_riskd_cluster_strategy_conflicts", 1.0).await;
    until_metric(&c, "kalshi_riskd_cluster_strategy_conflicts", 1.0).await;
    assert!(
        a.log().contains("claimed by another member too"),
        "{}",
        a.log()
    );
    let (code, out, err) = cli(c_dir.path(), &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("CLUSTER CONFLICT: strategy alpha is also claimed by member a"),
        "{out}"
    );
    assert!(
        out.contains(
            "CLUSTER CONFIG MISMATCH: member a has a different [account] limit (the leader's acts)"
        ),
        "{out}"
    );
    assert!(
        a.log().contains("[account] limit differs from ours"),
        "{}",
        a.log()
    );
    // When c leaves, the conflict is gone on a.
    support::daemon::stop(c).await;
    until_metric(&a, "kalshi_riskd_cluster_strategy_conflicts", 0.0).await;
    until_metric(&a, "kalshi_riskd_cluster_members", 1.0).await;
}

/// The account-level limit is evaluated by the leader (the member registered longest) over every
/// fill of the account; when the leader dies, a survivor takes over once its lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_evaluates_the_account_limit_and_a_survivor_takes_over() {
    let etcd = Etcd::start();
    let t = TestSim::start().await;
    let account = "\n[account]\nmax_contracts = 10\nwindow = \"15s\"\n";
    let a_dir = member_with(&t, &etcd, "acct4", "a", ("alpha.toml", ALPHA), account);
    let b_dir = member_with(&t, &etcd, "acct4", "b", ("beta.toml", BETA), account);
    let a = start(a_dir.path()).await;
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    let b = start(b_dir.path()).await;
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    until_metric(&a, "kalshi_riskd_cluster_leader", 1.0).await;
    until_metric(&b, "kalshi_riskd_cluster_leader", 0.0).await;
    a.until_read_after_start();
    b.until_read_after_start();
    let beta_group = group_of(&b.state(), "beta");

    // 11 contracts in b's group: the leader a engages, b follows through the cluster.
    let (status, body) = t
        .order_in("KXSIM-26NOV23-T1", Some(&beta_group), "11", 1)
        .await;
    assert!(status.is_success(), "{body}");
    let engaged = a.until_audit("the leader's account-limit kill", |v| {
        v["event"] == "kill_engaged" && v["actor"] == "daemon"
    });
    assert!(
        engaged["reason"]
            .as_str()
            .unwrap()
            .contains("account limit"),
        "{engaged}"
    );
    let followed = b.until_state("engaged from the leader", kill_engaged);
    assert_eq!(followed["kill"]["actor"], "daemon@a", "{followed}");
    assert!(
        !b.audit()
            .iter()
            .any(|v| v["event"] == "kill_engaged" && v["actor"] == "daemon"),
        "b is not the leader: it did not evaluate the account limit itself"
    );
    let (code, out, err) = cli(b_dir.path(), &["release"]);
    assert_eq!(code, Some(0), "{out}{err}");
    a.until_state("released", |s| s["kill"].is_null());

    // The leader dies: b takes over when a's lease runs out.
    let died = Instant::now();
    a.crash();
    until_metric(&b, "kalshi_riskd_cluster_leader", 1.0).await;
    eprintln!(
        "takeover: b leads {:?} after a was killed (lease_ttl 2s)",
        died.elapsed()
    );
    until_metric(&b, "kalshi_riskd_cluster_members", 1.0).await;
    // b's groups stay triggered after the release: one more contract outside any group.
    let (status, body) = t.order_in("KXSIM-26NOV23-T1", None, "1", 1).await;
    assert!(status.is_success(), "{body}");
    let own = b.until_audit("b's own account-limit kill", |v| {
        v["event"] == "kill_engaged" && v["actor"] == "daemon"
    });
    assert!(
        own["reason"].as_str().unwrap().contains("account limit"),
        "{own}"
    );
}

/// `n` etcd members on loopback ports (one etcd cluster), each with its own data.
/// A three-member etcd loses its quorum (two members gone): both daemons, each on its own
/// member, lose the shared latch, keep triggering, refuse resets and releases; when the members
/// return, they converge on the engagement made during the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_cluster_without_quorum_is_unreadable_and_the_members_converge_when_it_heals() {
    let mut etcd = EtcdCluster::start(3);
    let t = TestSim::start().await;
    let cluster = |url: String, member: &str| {
        format!(
            "\n[kill]\nscope = \"managed\"\n\n[cluster]\nendpoints = [\"{url}\"]\nname = \"acct5\"\nmember = \"{member}\"\nlease_ttl = \"2s\"\n"
        )
    };
    let a_dir = setup(&t, &[("alpha.toml", ALPHA)], &cluster(etcd.url(0), "a"));
    let b_dir = setup(&t, &[("beta.toml", BETA)], &cluster(etcd.url(1), "b"));
    let a = start(a_dir.path()).await;
    let b = start(b_dir.path()).await;
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    until_metric(&b, "kalshi_riskd_cluster_members", 2.0).await;
    let alpha_group = group_of(&a.state(), "alpha");
    let beta_group = group_of(&b.state(), "beta");

    // The partition: members 1 and 2 gone; member 0 (a's) is up but has no quorum.
    let cut = Instant::now();
    etcd.kill(1);
    etcd.kill(2);
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 0.0).await;
    until_metric(&b, "kalshi_riskd_cluster_etcd_up", 0.0).await;
    eprintln!(
        "partition: both members unreadable after {:?}",
        cut.elapsed()
    );
    a.signal("-USR1");
    let took = until_triggered(&t, &alpha_group, "a's kill without quorum").await;
    eprintln!("kill on a without quorum: a's group triggered after {took:?}");
    let (code, out, err) = cli(a_dir.path(), &["release"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(t.group_state(&beta_group).await["triggered"], false);

    // Healed: a publishes, b engages and triggers its group.
    let healed = Instant::now();
    etcd.spawn(1);
    etcd.spawn(2);
    until_triggered(&t, &beta_group, "b after the partition healed").await;
    eprintln!(
        "partition healed: b's group triggered {:?} after the members returned",
        healed.elapsed()
    );
    b.until_state("engaged from a", |s| {
        s["kill"]["actor"]
            .as_str()
            .is_some_and(|x| x.ends_with("@a"))
    });
    until_metric(&a, "kalshi_riskd_cluster_etcd_up", 1.0).await;
    a.until_state("shared", |s| s["kill"]["shared"] == true);
}

/// A member that dies (`kill -9`: its lease runs out) is lost: the leader takes over guarding
/// its strategies from their published policies, with the windows it counted all along (a breach
/// spanning the death still triggers), and at once for a policy that fails closed. The member
/// that comes back takes its strategies back with the trips made meanwhile; one that stops
/// cleanly is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_members_strategies_are_guarded_by_the_leader_and_handed_back_with_their_trips() {
    let etcd = Etcd::start();
    let t = TestSim::start().await;
    let a_dir = member(&t, &etcd, "acct6", "a", ("alpha.toml", ALPHA));
    let beta = "subaccount = 1\n[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"1h\"\nmax_contracts = 5\n[owner_lost]\naction = \"guard\"\n";
    let gamma = "subaccount = 2\n[group]\ncontracts_limit = 100\n";
    let b_dir = setup(
        &t,
        &[("beta.toml", beta), ("gamma.toml", gamma)],
        &format!(
            "\n[kill]\nscope = \"managed\"\n\n[cluster]\nendpoints = [\"{}\"]\nname = \"acct6\"\nmember = \"b\"\nlease_ttl = \"2s\"\n",
            etcd.url()
        ),
    );
    let a = start(a_dir.path()).await;
    until_metric(&a, "kalshi_riskd_cluster_leader", 1.0).await;
    let b = start(b_dir.path()).await;
    until_metric(&b, "kalshi_riskd_cluster_members", 2.0).await;
    until_metric(&a, "kalshi_riskd_cluster_members", 2.0).await;
    b.until_read_after_start();
    let (beta_group, gamma_group) = (group_of(&b.state(), "beta"), group_of(&b.state(), "gamma"));

    // 3 of beta's 5 contracts while b lives: b counts them, and so does a's mirror.
    let (status, body) = t
        .order_in("KXSIM-26NOV23-T1", Some(&beta_group), "3", 1)
        .await;
    assert!(status.is_success(), "{body}");
    until_metric(&a, "kalshi_riskd_cluster_peer_fills_total", 1.0).await;

    let died = Instant::now();
    b.crash();
    let taken = a.until_audit("a takes over gamma", |v| {
        v["event"] == "takeover" && v["strategy"] == "gamma"
    });
    let took = died.elapsed();
    assert!(
        taken["reason"].as_str().unwrap().contains("b was lost"),
        "{taken}"
    );
    let gamma_at = until_triggered(&t, &gamma_group, "gamma fails closed at the takeover").await;
    eprintln!(
        "takeover: a guards b's strategies {took:?} after b was killed (lease_ttl 2s); gamma triggered {:?} later",
        gamma_at
    );
    assert!(
        t.group_state(&beta_group).await["triggered"] == false,
        "beta's policy says guard: not triggered at the takeover"
    );

    // 3 more: 6 over the hour, counted across b's death. a trips beta and triggers its group.
    let sent = Instant::now();
    let (status, body) = t
        .order_in("KXSIM-26NOV23-T1", Some(&beta_group), "3", 1)
        .await;
    assert!(status.is_success(), "{body}");
    let latency = until_triggered(&t, &beta_group, "a breach of a lost member's strategy").await;
    eprintln!(
        "guarded breach: beta's group triggered {:?} after the order ({latency:?} polling)",
        sent.elapsed()
    );
    let trip = a.until_audit("beta's trip on a", |v| {
        v["event"] == "trip" && v["strategy"] == "beta"
    });
    assert!(
        trip["reason"]
            .as_str()
            .unwrap()
            .contains("limit fast exceeded"),
        "{trip}"
    );
    let (code, out, err) = cli(a_dir.path(), &["status"]);
    assert_eq!(
        code,
        Some(6),
        "a guarded strategy tripped needs an operator: {out}{err}"
    );
    assert!(
        out.contains("CLUSTER MEMBER LOST: b (beta, gamma): guarded by the leader (a)"),
        "{out}"
    );
    assert!(
        out.contains("guarding beta for lost member b: tripped"),
        "{out}"
    );
    let until_handed = |n: usize| {
        let dir = a_dir.path().to_owned();
        async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let (_, json, _) = cli(&dir, &["status", "--json"]);
                let v: Value = serde_json::from_str(&json).unwrap();
                if v["cluster"]["handed_trips"].as_array().map(Vec::len) == Some(n) {
                    return v;
                }
                assert!(Instant::now() < deadline, "never {n} handed trips: {json}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until_handed(2).await;

    // b comes back: it takes its strategies back, tripped as a left them, and etcd lets go.
    let b = start(b_dir.path()).await;
    let back = b.until_state("b takes its trips back", |s| {
        s["strategies"]["beta"]["state"] == "tripped"
            && s["strategies"]["gamma"]["state"] == "tripped"
    });
    // beta's trip is a's (`daemon@a`), or b's own if b's start-up read of its fills came first.
    assert_eq!(
        back["strategies"]["beta"]["trip"]["reason"], "limit",
        "{back}"
    );
    assert_eq!(
        back["strategies"]["gamma"]["trip"]["reason"], "owner_lost",
        "{back}"
    );
    assert_eq!(
        back["strategies"]["gamma"]["trip"]["actor"], "daemon@a",
        "{back}"
    );
    until_metric(&a, "kalshi_riskd_cluster_members_lost", 0.0).await;
    a.until_audit("a hands beta back", |v| {
        v["event"] == "handback" && v["strategy"] == "beta"
    });
    until_handed(0).await;
    let (code, out, err) = cli(a_dir.path(), &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("guarding"), "{out}");

    assert_eq!(support::daemon::stop(b).await, Some(0));
    until_metric(&a, "kalshi_riskd_cluster_members", 1.0).await;
    let scrape = scrape(&a).await;
    assert_eq!(
        sample(&scrape, "kalshi_riskd_cluster_members_lost"),
        Some(0.0),
        "a clean stop is not a loss"
    );
}
