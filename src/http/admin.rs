//! The admin API: HTTP/1.1 + JSON on a unix socket. The socket's file mode
//! (0660) is the access control; every mutation is audited with the caller's uid, read from the
//! socket's peer credentials.
//!
//! | method and path                        | does                                            |
//! |----------------------------------------|-------------------------------------------------|
//! | `GET /v1/status`                       | per-strategy state, window use, groups, trips   |
//! | `GET /v1/groups`                       | strategy → its groups (for strategies to read)  |
//! | `POST /v1/kill`                        | engage the kill switch                          |
//! | `POST /v1/release`                     | release the kill latch (groups stay triggered)  |
//! | `POST /v1/reload`                      | reload the config and policies                  |
//! | `POST /v1/strategies/{name}/trigger`   | trip a strategy (trigger its groups)            |
//! | `POST /v1/strategies/{name}/reset`     | reset a strategy's groups (refused while the kill switch is engaged or the stream is blind) |
//!
//! Errors are JSON `{"error": "..."}` with 404 (unknown strategy or path), 409 (refused) or
//! 422 (a reload that found errors). Requests are answered by the daemon's loop, so they see
//! exactly what the risk core decided.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What a caller asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Status,
    Groups,
    Kill,
    Release,
    Reload,
    Trigger(String),
    Reset(String),
}

/// One request on its way to the daemon's loop.
#[derive(Debug)]
pub struct AdminCall {
    pub request: AdminRequest,
    /// `uid:N` of the caller.
    pub actor: String,
    pub reply: oneshot::Sender<(u16, Value)>,
}

/// The caller's uid, from the socket's peer credentials.
#[derive(Debug, Clone, Copy)]
struct Caller(Option<u32>);

async fn ask(tx: &mpsc::Sender<AdminCall>, caller: Caller, request: AdminRequest) -> Response {
    let (reply, answer) = oneshot::channel();
    let actor = match caller.0 {
        Some(uid) => format!("uid:{uid}"),
        None => "uid:unknown".to_owned(),
    };
    if tx
        .send(AdminCall {
            request,
            actor,
            reply,
        })
        .await
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "the daemon is stopping"})),
        )
            .into_response();
    }
    match answer.await {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "the daemon is stopping"})),
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
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "no such admin endpoint; see GET /v1/status"})),
    )
        .into_response()
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
        .fallback(not_found)
        .with_state(tx)
}

/// [`router`] for one connection whose peer is `uid` (from its credentials; `None` when the
/// kernel would not say), so every call is audited with who made it.
pub fn for_caller(app: &Router, uid: Option<u32>) -> Router {
    app.clone().layer(axum::Extension(ConnectInfo(Caller(uid))))
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
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
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display().to_string();
    let io = |source| AdminError::Io {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AdminError::InUse { path: shown });
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    let app = router(tx);
    let owned = path.to_owned();
    let connections = std::sync::Arc::new(super::serve::Connections::default());
    Ok(tokio::spawn(async move {
        // Its own cap, apart from the metrics port's: however busy that port is, `kill` gets in.
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let app = for_caller(&app, stream.peer_cred().ok().map(|c| c.uid()));
                        super::serve::spawn_connection(
                            stream,
                            app,
                            super::serve::Limits::ADMIN,
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

/// Why the admin socket gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// No daemon listens there.
    Unreachable,
    /// The socket's mode keeps this user out.
    Denied,
    /// The daemon did not answer in time.
    TimedOut,
    /// Anything else on the way.
    Failed,
}

/// The admin socket gave no answer: what kind of failure, and a message that says plainly why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: ClientErrorKind,
    pub message: String,
}

impl From<ClientError> for String {
    fn from(e: ClientError) -> String {
        e.message
    }
}

/// How long a CLI command waits for the daemon's answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request to a running daemon's admin socket: `(status, JSON body)`, within
/// [`DEFAULT_TIMEOUT`].
pub async fn request(socket: &Path, method: &str, path: &str) -> Result<(u16, Value), ClientError> {
    request_within(socket, method, path, DEFAULT_TIMEOUT).await
}

/// [`request`] with its own time limit: connecting, sending and reading the whole answer.
pub async fn request_within(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Value), ClientError> {
    match tokio::time::timeout(timeout, request_once(socket, method, path)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError {
            kind: ClientErrorKind::TimedOut,
            message: format!(
                "no answer from the daemon on {} within {} (it may be overloaded or stuck; check its journal)",
                socket.display(),
                humantime::format_duration(timeout)
            ),
        }),
    }
}

async fn request_once(
    socket: &Path,
    method: &str,
    path: &str,
) -> Result<(u16, Value), ClientError> {
    use http_body_util::BodyExt as _;
    use std::io::ErrorKind;
    let failed = |message: String| ClientError {
        kind: ClientErrorKind::Failed,
        message,
    };
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => ClientError {
            kind: ClientErrorKind::Unreachable,
            message: format!("no daemon is listening on {} (is kalshi-riskd running? check http.admin_socket)", socket.display()),
        },
        ErrorKind::PermissionDenied => ClientError {
            kind: ClientErrorKind::Denied,
            message: format!(
                "cannot open {}: permission denied (the admin socket is for its owner and group, mode 0660)",
                socket.display()
            ),
        },
        _ => failed(format!("cannot open {}: {e}", socket.display())),
    })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed(format!("admin socket {}: {e}", socket.display())))?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "kalshi-riskd")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| failed(format!("admin socket {}: {e}", socket.display())))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(format!("admin socket {}: {e}", socket.display())))?
        .to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}
