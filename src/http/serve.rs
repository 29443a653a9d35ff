//! Serving HTTP/1.1 on a listener that no client can starve.
//!
//! Both listeners (the metrics port and the admin socket) go through here:
//! - **A cap on connections**, per listener. When a new connection would pass it, the oldest
//!   one is closed to make room: an idle or slow flood cannot lock real clients out (a new
//!   connection always gets in), and the daemon's descriptors stay bounded whatever the flood.
//!   The caps are separate, so a flood on the metrics port leaves the admin socket, and `kill`,
//!   untouched.
//! - **A header-read timeout**: a connection that does not send a whole request head within
//!   it (silent, slow, or idle between keep-alive requests) is closed.
//! - **A lifetime**: no connection lives longer, whatever it does.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// How much a listener takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub lifetime: Duration,
}

impl Limits {
    /// The metrics port: Prometheus, health checks, and whoever else can reach it.
    pub const METRICS: Limits = Limits {
        max_connections: 128,
        header_timeout: Duration::from_secs(5),
        lifetime: Duration::from_secs(60),
    };
    /// The admin socket: operators and strategies. A reload can take a while on a slow
    /// exchange, so the lifetime is longer.
    pub const ADMIN: Limits = Limits {
        max_connections: 32,
        header_timeout: Duration::from_secs(5),
        lifetime: Duration::from_secs(300),
    };
}

/// The live connections of one listener, oldest first.
#[derive(Debug, Default)]
pub struct Connections {
    live: Mutex<BTreeMap<u64, CancellationToken>>,
    next: AtomicU64,
    /// Connections closed to make room for newer ones.
    pub evicted: AtomicU64,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, closing the oldest ones while the listener is at `limit`.
    fn admit(&self, limit: usize, stop: &CancellationToken) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = stop.child_token();
        let mut live = self.lock();
        while live.len() >= limit.max(1) {
            match live.pop_first() {
                Some((_, oldest)) => {
                    oldest.cancel();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        live.insert(id, token.clone());
        (id, token)
    }

    fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serves one accepted connection with `router`, under `limits`; `stop` ends it.
pub fn spawn_connection<I>(
    io: I,
    router: Router,
    limits: Limits,
    connections: std::sync::Arc<Connections>,
    stop: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (id, token) = connections.admit(limits.max_connections, stop);
    tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
        tokio::pin!(conn);
        let ended = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = token.cancelled() => None,
            _ = tokio::time::sleep(limits.lifetime) => None,
        };
        if ended.is_none() {
            // Let a request in flight finish its answer, briefly.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
        connections.leave(id);
    });
}
