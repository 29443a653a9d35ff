//! Real etcd members (Debian's `etcd-server`, or `ETCD_BIN`) on loopback ports, each with its
//! data in a temporary directory: cluster mode's shared store.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::PATIENCE;

/// A loopback port free a moment ago (for a process that must bind a known port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd member on loopback, with its data in a temporary directory.
pub struct Etcd(EtcdCluster);

impl Etcd {
    pub fn start() -> Etcd {
        Etcd(EtcdCluster::start(1))
    }

    pub fn url(&self) -> String {
        self.0.url(0)
    }

    /// Starts again on the same ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        self.0.spawn(0);
        self.0.wait_healthy(0);
    }

    /// SIGKILL: gone at once, as a crashed or partitioned etcd.
    pub fn kill(&mut self) {
        self.0.kill(0);
    }
}

fn etcd_bin() -> PathBuf {
    let bin = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        bin.exists(),
        "no etcd at {}: install Debian's etcd-server (or set ETCD_BIN)",
        bin.display()
    );
    bin
}

pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    dir: tempfile::TempDir,
    ports: Vec<(u16, u16)>,
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut c = EtcdCluster {
            members: (0..n).map(|_| None).collect(),
            dir: tempfile::tempdir().unwrap(),
            ports,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i].0)
    }

    pub fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .map(|(j, (_, peer))| format!("m{j}=http://127.0.0.1:{peer}"))
            .collect();
        let peer = format!("http://127.0.0.1:{}", self.ports[i].1);
        let child = Command::new(etcd_bin())
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &self.url(i)])
            .args(["--advertise-client-urls", &self.url(i)])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(format!("m{i}.log"))).unwrap())
            .spawn()
            .unwrap();
        self.members[i] = Some(child);
    }

    pub fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            let health = Command::new("curl")
                .args(["-fsS", &format!("{}/health", self.url(i))])
                .output()
                .unwrap();
            if health.status.success() && String::from_utf8_lossy(&health.stdout).contains("true") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} not healthy: {}",
                std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
