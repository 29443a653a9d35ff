//! Under systemd, stderr is the journal's stream (`JOURNAL_STREAM` names its device and inode):
//! every log line then starts with its syslog priority, which journald takes as the entry's
//! priority, so `journalctl -p err` finds the errors. The real binary, against the simulator.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::daemon::{cli, setup, start};
use support::{PATIENCE, TestSim};

const CALM: &str = "[group]\ncontracts_limit = 100\n";

fn wait_for_line(path: &std::path::Path, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| f(l)) {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_journal_stream_every_line_carries_its_priority() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let log = dir.path().join("journal.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["run", "--config"])
        .arg(dir.path().join("kalshi-riskd.toml"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let log2 = log.clone();
    tokio::task::spawn_blocking(move || {
        let info = wait_for_line(&log2, "an info line", |l| l.contains("metrics listening"));
        assert!(info.starts_with("<6>{"), "{info}");
        let usr1 = Command::new("kill").args(["-USR1", &pid]).status().unwrap();
        assert!(usr1.success());
        let error = wait_for_line(&log2, "the kill switch's error line", |l| {
            l.contains("SIGUSR1: kill switch")
        });
        assert!(error.starts_with("<3>{"), "{error}");
        let text = std::fs::read_to_string(&log2).unwrap();
        for line in text.lines() {
            assert!(
                ["<3>{", "<4>{", "<6>{", "<7>{"]
                    .iter()
                    .any(|p| line.starts_with(p)),
                "a line without its priority: {line}"
            );
        }
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    })
    .await
    .unwrap();
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_is_replaced_at_run_time_through_the_admin_api() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let p = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let (code, out, err) = cli(&p, &["log-level", "warn"]);
        assert_eq!(
            (code, out.trim()),
            (Some(0), "log filter now warn"),
            "{err}"
        );
        // An info line (a reload's) is no longer written; a warning (the change itself) was.
        d.signal("-HUP");
        d.until_audit("the first reload", |v| v["event"] == "reload");
        let log = d.log();
        assert!(!log.contains("SIGHUP: reloading"), "{log}");
        assert!(log.contains("log filter replaced"), "{log}");
        let (code, _, err) = cli(&p, &["log-level", "info,["]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("is not a log filter"), "{err}");
        let (code, _, _) = cli(&p, &["log-level", "info"]);
        assert_eq!(code, Some(0));
        d.signal("-HUP");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !d.log().contains("SIGHUP: reloading") {
            assert!(tokio::time::Instant::now() < deadline, "{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(d.stop(), Some(0));
    })
    .await
    .unwrap();
}
