//! The `kalshi-riskd sim` command as a user runs it: argument errors exit 2 with a message that
//! names the problem; a running simulator prints where it listens, serves signed requests, and
//! exits 0 on SIGTERM.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use support::{KEY_ID, key, signer};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
}

#[test]
fn unpaired_keys_and_unreadable_key_files_exit_2_with_a_reason() {
    let out = bin()
        .args(["sim", "--listen", "127.0.0.1:0", "--api-key-id", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in pairs"), "{err}");

    let out = bin()
        .args([
            "sim",
            "--api-key-id",
            "a",
            "--public-key",
            "/nonexistent/pub.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pub.pem"));

    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("pub.pem");
    std::fs::write(&bogus, "hello").unwrap();
    let out = bin()
        .args(["sim", "--api-key-id", "a", "--public-key"])
        .arg(&bogus)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pub.pem"));

    let out = bin().args(["sim", "--tier", "platinum"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("platinum"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_serves_signed_requests_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("pub.pem");
    std::fs::write(&public, &key().public_pem).unwrap();
    let mut child = bin()
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--tier",
            "unlimited",
            "--api-key-id",
            KEY_ID,
            "--public-key",
        ])
        .arg(&public)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Readiness: the line that names the bound address.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("sim exited before listening").unwrap();
        if let Some(rest) = line.strip_prefix("kalshi-riskd sim listening on ") {
            break rest.trim().to_owned();
        }
    };
    let path = "/trade-api/v2/portfolio/order_groups/create";
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(&json!({"contracts_limit": 3}));
    for (k, v) in signer().sign_now("POST", path).pairs() {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 201);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn without_keys_sim_generates_a_throwaway_key_readable_only_by_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["sim", "--listen", "127.0.0.1:0", "--key-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("kalshi-riskd sim listening on ") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let key_path = dir.path().join("key.pem");
    assert!(seen.contains(&key_path.display().to_string()), "{seen}");
    let id = std::fs::read_to_string(dir.path().join("key.id")).unwrap();
    assert!(seen.contains(id.trim()), "{seen}");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    kalshi_riskd::kalshi::Signer::from_pem_file(id.trim(), &key_path).expect("a usable key");
}
