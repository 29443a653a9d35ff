//! The metrics and health listener (TCP): `GET /metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (the stream is connected, groups are
//! reconciled and durable writes succeed: 200, else 503 with the reason).

mod board;
pub mod metrics;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;

/// What the listener shows, shared with the daemon's loop.
pub struct HealthState {
    pub metrics: Arc<Metrics>,
    /// Set by the daemon once groups are reconciled and the stream subscribed; cleared while
    /// the stream is down.
    pub ready: AtomicBool,
    /// Whether `state.json` and `audit.jsonl` writes are succeeding.
    pub writes: Arc<crate::daemon::writer::WriteHealth>,
}

async fn metrics(State(s): State<Arc<HealthState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz() -> impl IntoResponse {
    "ok\n"
}

async fn readyz(State(s): State<Arc<HealthState>>) -> impl IntoResponse {
    if s.writes.is_failing() {
        let why = s.writes.last_error().unwrap_or_default();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: durable writes are failing and being retried: {why}\n"),
        )
    } else if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the user stream is not connected or groups are not reconciled\n".to_owned(),
        )
    }
}

/// Binds the listener and serves until `stop` fires, under [`serve::Limits::METRICS`]
/// (connections capped, slow and idle ones closed). Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    state: Arc<HealthState>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let connections = Arc::new(serve::Connections::default());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => serve::spawn_connection(
                        stream,
                        app.clone(),
                        serve::Limits::METRICS,
                        connections.clone(),
                        &stop,
                    ),
                    Err(e) => {
                        // Out of descriptors or the like: the connection waits in the backlog.
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    });
    Ok((addr, task))
}
