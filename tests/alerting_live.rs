//! Alerting, live: the shipped scrape config, alert rules, Alertmanager example and dashboard,
//! run by a real Prometheus and a real Alertmanager (Debian's `prometheus` and
//! `prometheus-alertmanager`, or `PROMETHEUS_BIN` / `ALERTMANAGER_BIN`) against three real
//! daemons, each on its own simulator; Alertmanager's receivers post to a webhook in this test.
//! Only the scrape and evaluation intervals (1 s), the addresses and the rule file's path differ
//! from what ships. Needs the `cluster` feature and etcd too (one daemon runs in cluster mode, so
//! the dashboard's cluster panel has data): `cargo test --features cluster --test alerting_live
//! -- --nocapture` prints, for each alert, the time from the event to the notification.
//!
//! - daemon `a`: a breach trips a strategy (page, then resolved by a reset); a refused reload
//!   (ticket), cleared by a good one; two strategies breaching as the kill switch is pulled
//!   (the kill pages; the two trips are inhibited until it is released, then page).
//! - daemon `b` (cluster mode): its stream goes silent (blind: page), then speaks again.
//! - daemon `c`: killed hard (down: page), restarted (resolved), then restarted twice more
//!   (crash loop: page). The crash loop counts starts over 15 minutes, so it cannot resolve
//!   within a test; only its firing is checked.
#![cfg(feature = "cluster")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use support::daemon::{Daemon, cli, group_of, setup};
use support::etcd::{Etcd, free_port};
use support::{PATIENCE, TestSim};

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";
const CALM: &str = "[group]\ncontracts_limit = 100\n";
/// How long a notification may take beyond its rule's `for:` (scrape, evaluation, the route's
/// group_wait, or a resolution's next group_interval tick): generous, for liveness only.
const NOTIFY_PATIENCE: Duration = Duration::from_secs(90);
const RUNBOOK: &str = "file:///usr/share/doc/kalshi-riskd/RUNBOOK.md";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn bin(var: &str, default: &str, package: &str) -> PathBuf {
    let bin = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        bin.exists(),
        "no {} at {}: install Debian's {package} (or set {var})",
        default.rsplit('/').next().unwrap_or(default),
        bin.display()
    );
    bin
}

/// Replaces `from` by `to` in `text`, which must hold `from` exactly `n` times: a shipped file
/// that changed shape fails here rather than being silently left as it was.
fn adapt(text: &str, from: &str, to: &str, n: usize) -> String {
    assert_eq!(text.matches(from).count(), n, "{from:?} in:\n{text}");
    text.replace(from, to)
}

/// A child process killed when dropped, its log kept for failures.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    /// Prometheus or Alertmanager in `work`: its config `NAME.yml`, its data in `NAME-data`
    /// (`data_flag`), its log `NAME.log`, listening on 127.0.0.1:`port`.
    fn server(
        bin: &Path,
        work: &Path,
        name: &str,
        data_flag: &str,
        port: u16,
        extra: &[&str],
    ) -> Proc {
        let file = |suffix: &str| work.join(format!("{name}{suffix}")).display().to_string();
        Proc::spawn(
            Command::new(bin)
                .arg(format!("--config.file={}", file(".yml")))
                .arg(format!("{data_flag}={}", file("-data")))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(extra),
            work.join(format!("{name}.log")),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until `GET {base}/-/ready` answers 200.
    async fn until_ready(&self, base: &str) {
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/-/ready")).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{base} never ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One webhook post from Alertmanager: which receiver, when it arrived, and the payload.
#[derive(Clone, Debug)]
struct Note {
    receiver: String,
    at: Instant,
    body: Value,
}

#[derive(Default)]
struct Hook {
    notes: Mutex<Vec<Note>>,
    arrived: Notify,
}

impl Hook {
    async fn serve(self: &Arc<Self>) -> String {
        let app = axum::Router::new()
            .route(
                "/{receiver}",
                post(
                    |State(hook): State<Arc<Hook>>,
                     UrlPath(receiver): UrlPath<String>,
                     axum::Json(body): axum::Json<Value>| async move {
                        hook.notes.lock().unwrap().push(Note {
                            receiver,
                            at: Instant::now(),
                            body,
                        });
                        hook.arrived.notify_waiters();
                    },
                ),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn notes(&self) -> Vec<Note> {
        self.notes.lock().unwrap().clone()
    }

    /// Alerts of the notifications since `since` that match `labels`, with their receiver and
    /// arrival: one entry per alert in a notification.
    fn alerts(&self, since: Instant, labels: &[(&str, &str)]) -> Vec<(String, Instant, Value)> {
        let mut out = Vec::new();
        for n in self.notes().into_iter().filter(|n| n.at >= since) {
            for a in n.body["alerts"].as_array().into_iter().flatten() {
                if labels.iter().all(|(k, v)| a["labels"][k] == *v) {
                    out.push((n.receiver.clone(), n.at, a.clone()));
                }
            }
        }
        out
    }

    /// Waits (bounded by `for_` plus [`NOTIFY_PATIENCE`]) for a notification at or after
    /// `since` holding an alert with `labels` in `status` (firing or resolved); checks its
    /// receiver and runbook link and returns the time it took.
    async fn until(
        &self,
        since: Instant,
        status: &str,
        labels: &[(&str, &str)],
        receiver: &str,
        for_: Duration,
    ) -> Duration {
        let deadline = since + for_ + NOTIFY_PATIENCE;
        loop {
            let arrived = self.arrived.notified();
            let found = self
                .alerts(since, labels)
                .into_iter()
                .find(|(_, _, a)| a["status"] == status);
            if let Some((got_receiver, at, alert)) = found {
                assert_eq!(got_receiver, receiver, "{labels:?} {status}: {alert}");
                let name = alert["labels"]["alertname"].as_str().unwrap();
                assert_eq!(
                    alert["annotations"]["runbook_url"],
                    format!("{RUNBOOK}#{}", name.to_lowercase()),
                    "{alert}"
                );
                assert!(!alert["annotations"]["summary"].as_str().unwrap().is_empty());
                return at - since;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {status} notification for {labels:?} within {:?}; notifications:\n{:#?}",
                for_ + NOTIFY_PATIENCE,
                self.notes()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

/// The HTTP API of the test's Prometheus.
struct Prom {
    base: String,
    http: reqwest::Client,
}

impl Prom {
    /// An instant query's result vector.
    async fn query(&self, q: &str) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{q}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (bounded) until `q` returns `want` as its only value.
    async fn until_value(&self, q: &str, want: f64) {
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            let got = self.query(q).await;
            if let [one] = got.as_slice()
                && one["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) == Some(want)
            {
                return;
            }
            assert!(Instant::now() < deadline, "{q} never {want}: {got:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A daemon's config dir for the simulator `t` with metrics on a fixed loopback port (a
/// restarted daemon is the same Prometheus target); `extra` is more config.
fn daemon_dir(t: &TestSim, policies: &[(&str, &str)], extra: &str) -> (tempfile::TempDir, String) {
    let dir = setup(t, policies, extra);
    let instance = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("kalshi-riskd.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = adapt(
        &text,
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{instance}\""),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    (dir, instance)
}

/// One line of the report: what happened, how long until its notification.
type Report = Vec<(String, Duration)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_rules_and_routes_page_with_runbook_links_and_resolve() {
    let prometheus = bin("PROMETHEUS_BIN", "/usr/bin/prometheus", "prometheus");
    let alertmanager = bin(
        "ALERTMANAGER_BIN",
        "/usr/bin/prometheus-alertmanager",
        "prometheus-alertmanager",
    );
    let work = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let hook_base = hook.serve().await;

    // Three daemons, each on its own simulated exchange.
    let (ta, tb, tc) = (
        TestSim::start().await,
        TestSim::start().await,
        TestSim::start().await,
    );
    let etcd = Etcd::start();
    let (a_dir, ia) = daemon_dir(
        &ta,
        &[
            ("runaway.toml", RUNAWAY),
            ("spiky.toml", RUNAWAY),
            ("calm.toml", CALM),
        ],
        "",
    );
    let (b_dir, ib) = daemon_dir(
        &tb,
        &[("calm.toml", CALM)],
        &format!(
            "\n[cluster]\nendpoints = [\"{}\"]\nname = \"acct-b\"\nmember = \"b\"\nlease_ttl = \"2s\"\n",
            etcd.url()
        ),
    );
    let (c_dir, ic) = daemon_dir(&tc, &[("calm.toml", CALM)], "");
    let a = support::daemon::start(a_dir.path()).await;
    let b = support::daemon::start(b_dir.path()).await;
    let c = support::daemon::start(c_dir.path()).await;

    // Alertmanager on the shipped example; only the receivers' address is the test's webhook.
    let am_port = free_port();
    let shipped = std::fs::read_to_string(repo("deploy/alertmanager/alertmanager.yml")).unwrap();
    let am_cfg = adapt(
        &shipped,
        "http://127.0.0.1:9480/",
        &format!("{hook_base}/"),
        2,
    );
    std::fs::write(work.path().join("alertmanager.yml"), am_cfg).unwrap();
    // No gossip listener: it would bind every interface.
    let am = Proc::server(
        &alertmanager,
        work.path(),
        "alertmanager",
        "--storage.path",
        am_port,
        &["--cluster.listen-address="],
    );
    let am_base = format!("http://127.0.0.1:{am_port}");

    // Prometheus on the shipped scrape config and rules, merged into a prometheus.yml as the
    // scrape config says, with the test's intervals and addresses.
    let prom_port = free_port();
    let shipped = std::fs::read_to_string(repo("deploy/prometheus/scrape.yml")).unwrap();
    let scrape = adapt(&shipped, "scrape_interval: 5s", "scrape_interval: 1s", 1);
    let scrape = adapt(
        &scrape,
        "targets: [\"127.0.0.1:9469\"]",
        &format!("targets: [\"{ia}\", \"{ib}\", \"{ic}\"]"),
        1,
    );
    let scrape = adapt(
        &scrape,
        "/etc/prometheus/rules/kalshi-riskd.rules.yml",
        &repo("deploy/prometheus/kalshi-riskd.rules.yml")
            .display()
            .to_string(),
        1,
    );
    let prom_cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n{scrape}"
    );
    std::fs::write(work.path().join("prometheus.yml"), prom_cfg).unwrap();
    let prom_proc = Proc::server(
        &prometheus,
        work.path(),
        "prometheus",
        "--storage.tsdb.path",
        prom_port,
        &[],
    );
    let prom = Arc::new(Prom {
        base: format!("http://127.0.0.1:{prom_port}"),
        http: reqwest::Client::new(),
    });
    am.until_ready(&am_base).await;
    prom_proc.until_ready(&prom.base).await;
    for i in [&ia, &ib, &ic] {
        prom.until_value(&format!("up{{job=\"kalshi-riskd\",instance=\"{i}\"}}"), 1.0)
            .await;
    }
    // Every rule loaded, none in error.
    let rules: Value = prom
        .http
        .get(format!("{}/api/v1/rules", prom.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded: Vec<&Value> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let shipped_rules = std::fs::read_to_string(repo("deploy/prometheus/kalshi-riskd.rules.yml"))
        .unwrap()
        .matches("- alert: ")
        .count();
    assert_eq!(loaded.len(), shipped_rules, "{rules}");
    for r in &loaded {
        assert_eq!(r["health"], "ok", "{r}");
    }

    let a_chain = tokio::spawn(daemon_a(a, ta, hook.clone(), ia.clone(), am_base.clone()));
    let b_chain = tokio::spawn(daemon_b(b, tb, hook.clone(), ib.clone()));
    let c_chain = tokio::spawn(daemon_c(
        c,
        c_dir.path().to_owned(),
        hook.clone(),
        prom.clone(),
        ic.clone(),
    ));
    // Each chain hands back its daemon (and simulator) still running: the dashboard's
    // queries need all three.
    let ((ra, a, _ta), (rb, b, _tb), (rc, c)) = (
        a_chain.await.unwrap(),
        b_chain.await.unwrap(),
        c_chain.await.unwrap(),
    );
    let report: Report = ra.into_iter().chain(rb).chain(rc).collect();

    dashboard_queries_return_data(&prom, &[&ia, &ib, &ic]).await;

    println!("\nevent -> notification (scrape and evaluation every 1 s; the shipped routes):");
    for (what, took) in &report {
        println!("  {what:<58} {:>6.1} s", took.as_secs_f64());
    }
    drop((a, b, c));
}

/// Daemon `a`: a breach trip and its reset; a refused reload and a good one; the kill switch,
/// which inhibits the trips that come with it, and its release.
async fn daemon_a(
    d: Daemon,
    t: TestSim,
    hook: Arc<Hook>,
    i: String,
    am_base: String,
) -> (Report, Daemon, TestSim) {
    let mut report = Report::new();
    let runaway = group_of(&d.state(), "runaway");
    let inst = i.as_str();

    // A refused reload, alongside the trip (its own alert and route).
    let reload = async {
        let mut out = Report::new();
        let bad = d.dir.join("policies/bad.toml");
        std::fs::write(&bad, "[group]\ncontracts_limit = \"many\"\n").unwrap();
        let at = Instant::now();
        d.signal("-HUP");
        let labels = [("alertname", "KalshiRiskdReloadFailed"), ("instance", inst)];
        let took = hook
            .until(at, "firing", &labels, "ticket", Duration::ZERO)
            .await;
        out.push(("a reload refused (ticket)".to_owned(), took));
        std::fs::remove_file(&bad).unwrap();
        let at = Instant::now();
        d.signal("-HUP");
        let took = hook
            .until(at, "resolved", &labels, "ticket", Duration::ZERO)
            .await;
        out.push(("... a good reload (resolved)".to_owned(), took));
        out
    };

    let trip = async {
        let mut out = Report::new();
        // 21 contracts against a limit of 20 in 15 s.
        t.order(Some(&runaway), "10").await;
        let at = Instant::now();
        t.order(Some(&runaway), "11").await;
        let labels = [
            ("alertname", "KalshiRiskdStrategyTripped"),
            ("instance", inst),
            ("strategy", "runaway"),
            ("severity", "critical"),
            ("job", "kalshi-riskd"),
        ];
        let took = hook
            .until(at, "firing", &labels, "page", Duration::ZERO)
            .await;
        out.push(("a breach trips runaway (page)".to_owned(), took));
        let at = Instant::now();
        let (code, o, e) = cli(&d.dir, &["reset", "runaway"]);
        assert_eq!(code, Some(0), "{o}{e}");
        let took = hook
            .until(at, "resolved", &labels, "page", Duration::ZERO)
            .await;
        out.push(("... runaway reset (resolved)".to_owned(), took));
        out
    };
    let (r1, r2) = tokio::join!(trip, reload);
    report.extend(r1);
    report.extend(r2);

    // An incident: two strategies breach and the kill switch is pulled at once. The kill pages;
    // the two trips are inhibited by it (not paged) while it is engaged, and page once it is
    // released, since their groups stay triggered until a reset.
    let spiky = group_of(&d.state(), "spiky");
    t.order(Some(&runaway), "21").await;
    t.order(Some(&spiky), "21").await;
    let at = Instant::now();
    d.signal("-USR1");
    let kill = [
        ("alertname", "KalshiRiskdKillSwitchEngaged"),
        ("instance", inst),
    ];
    let took = hook
        .until(at, "firing", &kill, "page", Duration::ZERO)
        .await;
    report.push(("SIGUSR1: the kill switch engaged (page)".to_owned(), took));
    let tripped = [
        ("alertname", "KalshiRiskdStrategyTripped"),
        ("instance", inst),
    ];
    // Alertmanager holds both strategies' trip alerts, each inhibited by the kill.
    let deadline = Instant::now() + NOTIFY_PATIENCE;
    let held = loop {
        let alerts: Vec<Value> = reqwest::get(format!(
            "{am_base}/api/v2/alerts?filter=alertname%3D%22KalshiRiskdStrategyTripped%22"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let inhibited = alerts
            .iter()
            .filter(|a| a["labels"]["instance"] == inst)
            .filter(|a| {
                a["status"]["state"] == "suppressed"
                    && a["status"]["inhibitedBy"]
                        .as_array()
                        .is_some_and(|v| !v.is_empty())
            })
            .count();
        if inhibited == 2 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager never held both trips inhibited: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Past the route's group_wait (5 s) with margin: had they not been inhibited, they would
    // have paged by now.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let paged = hook.alerts(at, &tripped);
    assert!(
        paged.is_empty(),
        "a strategy tripped with the kill switch engaged paged on its own ({:?} after both were \
         held): {paged:#?}",
        held.elapsed()
    );

    let at = Instant::now();
    let (code, o, e) = cli(&d.dir, &["release"]);
    assert_eq!(code, Some(0), "{o}{e}");
    let released = hook.until(at, "resolved", &kill, "page", Duration::ZERO);
    let runaway_tripped = [tripped[0], tripped[1], ("strategy", "runaway")];
    let spiky_tripped = [tripped[0], tripped[1], ("strategy", "spiky")];
    let runaway_pages = hook.until(at, "firing", &runaway_tripped, "page", Duration::ZERO);
    let spiky_pages = hook.until(at, "firing", &spiky_tripped, "page", Duration::ZERO);
    let (took, r, s) = tokio::join!(released, runaway_pages, spiky_pages);
    report.push(("... released (resolved)".to_owned(), took));
    report.push((
        "... the trips it held, still tripped (page)".to_owned(),
        r.max(s),
    ));
    let (code, o, e) = cli(&d.dir, &["reset", "--all"]);
    assert_eq!(code, Some(0), "{o}{e}");
    (report, d, t)
}

/// Daemon `b` (cluster mode): its stream goes silent, then speaks again.
async fn daemon_b(d: Daemon, t: TestSim, hook: Arc<Hook>, i: String) -> (Report, Daemon, TestSim) {
    let mut report = Report::new();
    let labels = [
        ("alertname", "KalshiRiskdStreamBlind"),
        ("instance", i.as_str()),
    ];
    let at = Instant::now();
    t.set_faults(json!({"ws_silent": true})).await;
    let took = hook
        .until(at, "firing", &labels, "page", Duration::from_secs(60))
        .await;
    report.push(("the stream goes silent: blind (page)".to_owned(), took));
    let at = Instant::now();
    t.set_faults(json!({})).await;
    let took = hook
        .until(at, "resolved", &labels, "page", Duration::ZERO)
        .await;
    report.push(("... the stream speaks again (resolved)".to_owned(), took));
    (report, d, t)
}

/// Daemon `c`: killed hard and left down, restarted, then restarted twice more. Returns the
/// last daemon, still running, for the dashboard's queries.
async fn daemon_c(
    d: Daemon,
    dir: PathBuf,
    hook: Arc<Hook>,
    prom: Arc<Prom>,
    i: String,
) -> (Report, Daemon) {
    let mut report = Report::new();
    let down = [("alertname", "KalshiRiskdDown"), ("instance", i.as_str())];
    let at = Instant::now();
    d.crash();
    let took = hook
        .until(at, "firing", &down, "page", Duration::from_secs(60))
        .await;
    report.push(("kill -9: down (page)".to_owned(), took));
    let at = Instant::now();
    let mut d = support::daemon::start(&dir).await;
    let took = hook
        .until(at, "resolved", &down, "page", Duration::ZERO)
        .await;
    report.push(("... restarted (resolved)".to_owned(), took));

    // Two more starts, each seen by a scrape: three changes of the start time in 15 minutes.
    let loop_labels = [
        ("alertname", "KalshiRiskdCrashLoop"),
        ("instance", i.as_str()),
    ];
    let changes = format!("changes(kalshi_riskd_start_time_seconds{{instance=\"{i}\"}}[15m])");
    prom.until_value(&changes, 1.0).await;
    let mut at = Instant::now();
    for n in [2.0, 3.0] {
        d.crash();
        d = support::daemon::start(&dir).await;
        at = Instant::now();
        prom.until_value(&changes, n).await;
    }
    let took = hook
        .until(at, "firing", &loop_labels, "page", Duration::ZERO)
        .await;
    report.push((
        "a third restart in 15 minutes: crash loop (page)".to_owned(),
        took,
    ));
    (report, d)
}

/// Every panel's query in the shipped dashboard, with `$instance` as Grafana's "All" fills it
/// (a regex of every instance its variable query finds), returns data.
async fn dashboard_queries_return_data(prom: &Prom, instances: &[&str]) {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/kalshi-riskd.json")).unwrap(),
    )
    .unwrap();
    // The variable's query: label_values(kalshi_riskd_build_info, instance).
    let var = &dash["templating"]["list"][1];
    assert_eq!(
        var["query"],
        "label_values(kalshi_riskd_build_info, instance)"
    );
    let found: Vec<String> = prom
        .query("kalshi_riskd_build_info")
        .await
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
        .collect();
    for i in instances {
        assert!(found.iter().any(|f| f == i), "{i} not in {found:?}");
    }
    let all = format!(
        "({})",
        found
            .iter()
            .map(|i| i.replace('.', "\\\\."))
            .collect::<Vec<_>>()
            .join("|")
    );
    let mut exprs = Vec::new();
    collect_exprs(&dash["panels"], &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut empty = Vec::new();
    for (title, expr) in &exprs {
        let q = expr.replace("$instance", &all);
        assert!(!q.contains('$'), "{title}: an unknown variable in {q}");
        if prom.query(&q).await.is_empty() {
            empty.push(format!("{title}: {q}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels with no data:\n{}",
        empty.join("\n")
    );
}

fn collect_exprs(panels: &Value, out: &mut Vec<(String, String)>) {
    for p in panels.as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((p["title"].as_str().unwrap_or("?").to_owned(), e.to_owned()));
            }
        }
        collect_exprs(&p["panels"], out);
    }
}
