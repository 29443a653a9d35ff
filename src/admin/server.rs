//! The admin API's server: HTTP/1.1 + JSON on a unix socket. The socket's file mode (0660) is
//! the access control; every request is handed to the daemon's loop with the caller's uid,
//! read from the socket's peer credentials, so every mutation is audited with who made it.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::api::{AdminError, AdminRequest, AdminResult};

/// One request on its way to the daemon's loop.
#[derive(Debug)]
pub struct AdminCall {
    pub request: AdminRequest,
    /// `uid:N` of the caller.
    pub actor: String,
    pub reply: oneshot::Sender<AdminResult>,
}

/// Set when a kill request arrives, and never cleared: a stop asked for during start-up (when
/// the loop has not yet taken the request) lets start-up finish so that the kill is carried
/// out.
pub static KILL_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The caller's uid, from the socket's peer credentials.
#[derive(Debug, Clone, Copy)]
struct Caller(Option<u32>);

async fn ask(tx: &mpsc::Sender<AdminCall>, caller: Caller, request: AdminRequest) -> Response {
    let (reply, answer) = oneshot::channel();
    let actor = match caller.0 {
        Some(uid) => format!("uid:{uid}"),
        None => "uid:unknown".to_owned(),
    };
    let call = AdminCall {
        request,
        actor,
        reply,
    };
    if tx.send(call).await.is_err() {
        return respond(Err(AdminError::Stopping));
    }
    respond(answer.await.unwrap_or(Err(AdminError::Stopping)))
}

/// The one place an answer becomes an HTTP response.
fn respond(result: AdminResult) -> Response {
    match result {
        Ok(answer) => (StatusCode::OK, axum::Json(answer)).into_response(),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(e.body()),
        )
            .into_response(),
    }
}

pub type Tx = mpsc::Sender<AdminCall>;

async fn status(State(tx): State<Tx>, ConnectInfo(c): ConnectInfo<Caller>) -> Response {
    ask(&tx, c, AdminRequest::Status).await
}
async fn groups(State(tx): State<Tx>, ConnectInfo(c): ConnectInfo<Caller>) -> Response {
    ask(&tx, c, AdminRequest::Groups).await
}
async fn kill(State(tx): State<Tx>, ConnectInfo(c): ConnectInfo<Caller>) -> Response {
    KILL_ASKED.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::debug!(actor = ?c.0, "kill request received");
    ask(&tx, c, AdminRequest::Kill).await
}
async fn release(State(tx): State<Tx>, ConnectInfo(c): ConnectInfo<Caller>) -> Response {
    ask(&tx, c, AdminRequest::Release).await
}
async fn reload(State(tx): State<Tx>, ConnectInfo(c): ConnectInfo<Caller>) -> Response {
    ask(&tx, c, AdminRequest::Reload).await
}
async fn trigger(
    State(tx): State<Tx>,
    ConnectInfo(c): ConnectInfo<Caller>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    ask(&tx, c, AdminRequest::Trigger(name)).await
}
async fn reset(
    State(tx): State<Tx>,
    ConnectInfo(c): ConnectInfo<Caller>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    ask(&tx, c, AdminRequest::Reset(name)).await
}
async fn log_filter(
    State(tx): State<Tx>,
    ConnectInfo(c): ConnectInfo<Caller>,
    UrlPath(filter): UrlPath<String>,
) -> Response {
    ask(&tx, c, AdminRequest::LogFilter(filter)).await
}
async fn not_found() -> Response {
    respond(Err(AdminError::NoSuchEndpoint))
}

/// The admin routes; each request becomes an [`AdminCall`] on `tx`, answered by the daemon.
pub fn router(tx: Tx) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/groups", get(groups))
        .route("/v1/kill", post(kill))
        .route("/v1/release", post(release))
        .route("/v1/reload", post(reload))
        .route("/v1/strategies/{name}/trigger", post(trigger))
        .route("/v1/strategies/{name}/reset", post(reset))
        .route("/v1/log/{filter}", put(log_filter))
        .fallback(not_found)
        .with_state(tx)
}

/// [`router`] for one connection whose peer is `uid` (from its credentials; `None` when the
/// kernel would not say), so every call is audited with who made it.
pub fn for_caller(app: &Router, uid: Option<u32>) -> Router {
    app.clone().layer(axum::Extension(ConnectInfo(Caller(uid))))
}

/// Why the admin socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("admin socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("admin socket {path} is in use by another running daemon")]
    InUse { path: String },
}

/// Binds the admin socket (mode 0660) and serves until `stop` fires; the socket file is
/// removed on the way out. A stale socket left by a crash is replaced; a live one is refused.
pub async fn serve(
    path: &Path,
    tx: Tx,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, SocketError> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display().to_string();
    let io = |source| SocketError::Io {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse { path: shown });
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    let app = router(tx);
    let owned = path.to_owned();
    let connections = std::sync::Arc::new(crate::http::serve::Connections::default());
    Ok(tokio::spawn(async move {
        // Its own cap, apart from the metrics port's: however busy that port is, `kill` gets in.
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let app = for_caller(&app, stream.peer_cred().ok().map(|c| c.uid()));
                        crate::http::serve::spawn_connection(
                            stream,
                            app,
                            crate::http::serve::Limits::ADMIN,
                            connections.clone(),
                            &stop,
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&owned);
    }))
}
