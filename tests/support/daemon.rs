//! The real `kalshi-riskd run` binary as a child process: a config dir for a simulator, start
//! (waiting for READY=1 on a real NOTIFY_SOCKET), signals, state and audit readers, stop.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{KEY_ID, PATIENCE, TestSim, key};

pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub notify: UnixDatagram,
}

/// A config dir for the simulator `t`, with the given policy files.
pub fn setup(t: &TestSim, policies: &[(&str, &str)], extra: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("policies")).unwrap();
    std::fs::write(p.join("key.pem"), &key().private_pem).unwrap();
    std::fs::set_permissions(p.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = format!(
        "[exchange]\nenvironment = \"sim\"\nrest_url = \"{}\"\nws_url = \"{}\"\napi_key_id = \"{KEY_ID}\"\nprivate_key_path = \"key.pem\"\nwrite_budget_per_s = 100\n\n[policies]\ndir = \"policies\"\n\n[state]\ndir = \"state\"\n\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"admin.sock\"\n\n[log]\nformat = \"json\"\n{extra}",
        t.sim.rest_url(),
        t.sim.ws_url()
    );
    std::fs::write(p.join("kalshi-riskd.toml"), cfg).unwrap();
    for (name, text) in policies {
        std::fs::write(p.join("policies").join(name), text).unwrap();
    }
    dir
}

impl Daemon {
    /// Starts the daemon and waits for READY=1.
    pub fn start(dir: &Path) -> Daemon {
        let mut d = Daemon::spawn(dir, &[]);
        d.wait_notify(&["READY=1"]);
        d
    }

    /// Starts the daemon with extra environment variables, without waiting for anything. Its
    /// log (stderr) goes to `daemon.log`, started afresh.
    pub fn spawn(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_limited(dir, env, None)
    }

    /// [`Daemon::spawn`] with the open-descriptor limit (soft and hard) set to `nofile`, as a
    /// unit without `LimitNOFILE=` would leave it.
    pub fn spawn_limited(dir: &Path, env: &[(&str, &str)], nofile: Option<u64>) -> Daemon {
        let sock = dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).unwrap();
        notify.set_read_timeout(Some(PATIENCE)).unwrap();
        let bin = env!("CARGO_BIN_EXE_kalshi-riskd");
        let mut cmd = match nofile {
            None => Command::new(bin),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                c
            }
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(dir.join("kalshi-riskd.toml"))
            .env("NOTIFY_SOCKET", &sock)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            dir: dir.to_owned(),
            notify,
        }
    }

    /// SIGKILL, and waits for the process to be gone: no chance to write anything.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for one notification message holding every line in `want` (a line ending in `=`
    /// matches any value).
    pub fn wait_notify(&mut self, want: &[&str]) {
        let mut buf = [0u8; 512];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let has = |w: &str| {
                        msg.lines()
                            .any(|l| l == w || (w.ends_with('=') && l.starts_with(w)))
                    };
                    if want.iter().all(|w| has(w)) {
                        return;
                    }
                }
                Err(e) => panic!("no {want:?} from the daemon: {e}\n{}", self.log()),
            }
        }
    }

    /// Where the metrics listener bound (from the daemon's log).
    pub fn metrics_addr(&self) -> String {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "metrics listening (/metrics, /healthz, /readyz)")
            .and_then(|v| v["addr"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("state/state.json")).unwrap()).unwrap()
    }

    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("state/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits for the read of the fills made between the start-up rebuild and the
    /// subscription, which lands just after READY: until it has, a fill made now may be
    /// counted by it rather than by what a test means to exercise.
    pub fn until_read_after_start(&self) {
        self.until_audit("the read after the start", |v| {
            v["event"] == "backfill"
                && v["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("after the start"))
        });
    }

    /// Waits (bounded) until `f` holds for the state file.
    pub fn until_state(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(bytes) = std::fs::read(self.dir.join("state/state.json"))
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                && f(&v)
            {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "state never {what}:\n{}\n{}",
                self.state(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn until_audit(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(v) = self.audit().into_iter().find(|v| f(v)) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "audit never showed {what}:\n{:#?}\n{}",
                self.audit(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.stop_waiting()
    }

    /// SIGTERM, then the exit code; the daemon's files stay at hand.
    pub fn stop_waiting(&mut self) -> Option<i32> {
        self.signal("-TERM");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the daemon off the async workers (waiting for READY=1 blocks).
pub async fn start(dir: &Path) -> Daemon {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Daemon::start(&dir))
        .await
        .unwrap()
}

/// Stops the daemon with SIGTERM; its exit code.
pub async fn stop(d: Daemon) -> Option<i32> {
    tokio::task::spawn_blocking(move || d.stop()).await.unwrap()
}

/// Runs `kalshi-riskd run` on a config text that must be refused.
pub fn run_config(dir: &Path, text: &str) -> std::process::Output {
    std::fs::write(dir.join("k.toml"), text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["run", "--config"])
        .arg(dir.join("k.toml"))
        .output()
        .unwrap()
}

pub fn group_of(state: &Value, strategy: &str) -> String {
    state["strategies"][strategy]["groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Switches a config made by [`setup`] to group actions over FIX at `fix_addr`.
pub fn use_fix(dir: &Path, fix_addr: &str) {
    let path = dir.join("kalshi-riskd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let anchor = "write_budget_per_s = 100\n";
    assert!(text.contains(anchor));
    let text = text.replace(
        anchor,
        &format!("{anchor}control = \"fix\"\nfix_addr = \"{fix_addr}\"\n"),
    );
    std::fs::write(path, text).unwrap();
}

/// Runs a CLI command against the config in `dir`: exit code, stdout, stderr.
pub fn cli(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(args)
        .arg("--config")
        .arg(dir.join("kalshi-riskd.toml"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET http://{addr}{path}`: status and body.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of one sample line (`name{labels} value`) in a scrape.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
