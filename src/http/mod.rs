//! The metrics and health listener (TCP, DESIGN.md §8): `GET /metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (the stream is connected and groups are
//! reconciled: 200, else 503).

pub mod admin;
pub mod metrics;

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
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the user stream is not connected or groups are not reconciled\n",
        )
    }
}

/// Binds the listener and serves until `stop` fires. Returns the bound address.
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
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok((addr, task))
}
