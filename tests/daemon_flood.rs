//! Listeners that cannot be starved: the real binary, held to 1,024 descriptors (systemd's
//! default), under thousands of idle and slow-header connections to its metrics port. Health
//! checks, `status` and `kill` still answer, the watchdog keeps its rhythm, a breach during the
//! flood trips and is persisted, and the slow connections are closed by the daemon. A test
//! binary of its own: it holds thousands of sockets.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, cli, group_of, setup, stop};
use support::{PATIENCE, TestSim};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";
const CALM: &str = "[group]\ncontracts_limit = 100\n";

async fn healthz(addr: &str) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_on_the_metrics_port_starves_nothing() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)], "");
    let d = Daemon::spawn_limited(dir.path(), &[("WATCHDOG_USEC", "2000000")], Some(1024));
    // Every notification, timed, from here on.
    let notes: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    {
        let sock = d.notify.try_clone().unwrap();
        let notes = notes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        notes.lock().unwrap().push((Instant::now(), msg));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
    }
    let deadline = Instant::now() + PATIENCE;
    while !notes
        .lock()
        .unwrap()
        .iter()
        .any(|(_, m)| m.contains("READY=1"))
    {
        assert!(Instant::now() < deadline, "not ready:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = d.metrics_addr();
    let runaway = group_of(&d.state(), "runaway");

    // The flood: 1,500 idle connections and 500 that send half a request head, more than the
    // daemon's descriptors.
    let flood_started = Instant::now();
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for i in 0..2_000 {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            continue;
        };
        if i % 4 == 0 {
            let _ = s
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await;
            slow.push(s);
        } else {
            idle.push(s);
        }
    }
    assert!(idle.len() + slow.len() > 1_500, "the flood connected");

    // Health checks, status and kill still answer; a breach trips and is persisted.
    assert_eq!(healthz(&addr).await, Ok(200), "{}", d.log());
    let dir_path = dir.path().to_owned();
    let (code, out, err) = tokio::task::spawn_blocking({
        let p = dir_path.clone();
        move || cli(&p, &["status"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "status during the flood: {out}{err}");
    t.order(Some(&runaway), "21").await;
    d.until_state("tripped during the flood", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    let (code, _, err) = tokio::task::spawn_blocking({
        let p = dir_path.clone();
        move || cli(&p, &["kill"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "kill during the flood: {err}");
    d.until_state("the kill latch persisted", |s| s["kill"].is_object());

    // Slow heads are cut off by the daemon's header timeout (5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut closed = 0;
    for s in slow.iter_mut() {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, slow.len(), "every slow connection was closed");
    assert_eq!(healthz(&addr).await, Ok(200));

    // The watchdog never paused more than 2 s during the flood.
    let watchdogs: Vec<Instant> = notes
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, m)| *at >= flood_started && m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    let worst = watchdogs
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        watchdogs.len() >= 5,
        "{} WATCHDOG=1 in the flood",
        watchdogs.len()
    );
    assert!(worst <= Duration::from_secs(2), "watchdog paused {worst:?}");
    drop(idle);
    drop(slow);

    // And the record survives a kill -9.
    d.crash();
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir_path.join("state/state.json")).unwrap()).unwrap();
    assert!(state["kill"].is_object(), "{state}");
    let d = support::daemon::start(&dir_path).await;
    assert!(d.state()["kill"].is_object());
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_command_that_gets_no_answer_times_out_with_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kalshi-riskd.toml"),
        "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\n[policies]\ndir = \".\"\n[http]\nadmin_socket = \"admin.sock\"\n",
    )
    .unwrap();
    // Something listens on the socket but never answers.
    let listener = tokio::net::UnixListener::bind(dir.path().join("admin.sock")).unwrap();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            kept.push(s);
        }
    });
    let p = dir.path().to_owned();
    let started = Instant::now();
    let (code, _, err) = tokio::task::spawn_blocking(move || cli(&p, &["--timeout", "1s", "kill"]))
        .await
        .unwrap();
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("no answer from the daemon") && err.contains("within 1s"),
        "{err}"
    );
    assert!(started.elapsed() < PATIENCE);
    held.abort();
}

/// Found by the chaos suite: each reload tells the service manager RELOADING=1 and READY=1.
/// A manager that stops reading (its datagram queue full) must cost dropped notifications,
/// never the risk loop: before, the first send past the queue's length blocked the loop for
/// good and `status`, breaches and SIGTERM all went unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_manager_that_stops_reading_notifications_stalls_nothing() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    // READY=1 is read; nothing after it ever is. The queue holds `max_dgram_qlen` datagrams
    // (10 on many machines, 512 on others): reload until the sends overflow it.
    let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512);
    let d = support::daemon::start(dir.path()).await;
    let dropped = || d.log().contains("service manager notification not sent");
    for n in 1..=qlen / 2 + 20 {
        if dropped() {
            break;
        }
        d.signal("-HUP");
        let reloads = || d.audit().iter().filter(|v| v["event"] == "reload").count();
        let deadline = Instant::now() + PATIENCE;
        while reloads() < n {
            assert!(
                Instant::now() < deadline,
                "reload {n} never landed: the loop is stalled\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (code, out, err) = cli(dir.path(), &["status", "--timeout", "5s"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let g = group_of(&d.state(), "runaway");
    t.order(Some(&g), "21").await;
    d.until_state("tripped", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    assert!(dropped(), "the dropped notifications are logged");
    assert_eq!(stop(d).await, Some(0));
}
