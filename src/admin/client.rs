//! The admin API's client, for the CLI and the demo: typed calls ([`AdminClient`]) and one raw
//! call ([`request`]) for tools that want the JSON as it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::api::{
    AdminRequest, ErrorBody, Groups, Killed, LogFilterSet, Released, Reloaded, Status,
    StrategyChanged,
};

/// Why the admin socket gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// No daemon listens there.
    Unreachable,
    /// The socket's mode keeps this user out.
    Denied,
    /// The daemon did not answer in time.
    TimedOut,
    /// The daemon answered with a refusal (this HTTP status; the message is its reason).
    Refused(u16),
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
/// [`DEFAULT_TIMEOUT`]. A body that is not JSON comes back as a JSON string.
pub async fn request(socket: &Path, method: &str, path: &str) -> Result<(u16, Value), ClientError> {
    let (status, body) = request_within(socket, method, path, DEFAULT_TIMEOUT).await?;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}

/// A running daemon's admin socket, with the time each call may take.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AdminClient {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        AdminClient {
            socket: socket.into(),
            timeout,
        }
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(&AdminRequest::Status).await
    }

    pub async fn groups(&self) -> Result<Groups, ClientError> {
        self.call(&AdminRequest::Groups).await
    }

    pub async fn kill(&self) -> Result<Killed, ClientError> {
        self.call(&AdminRequest::Kill).await
    }

    pub async fn release(&self) -> Result<Released, ClientError> {
        self.call(&AdminRequest::Release).await
    }

    pub async fn reload(&self) -> Result<Reloaded, ClientError> {
        self.call(&AdminRequest::Reload).await
    }

    pub async fn trigger(&self, strategy: &str) -> Result<StrategyChanged, ClientError> {
        self.call(&AdminRequest::Trigger(strategy.to_owned())).await
    }

    pub async fn reset(&self, strategy: &str) -> Result<StrategyChanged, ClientError> {
        self.call(&AdminRequest::Reset(strategy.to_owned())).await
    }

    pub async fn log_filter(&self, filter: &str) -> Result<LogFilterSet, ClientError> {
        self.call(&AdminRequest::LogFilter(filter.to_owned())).await
    }

    /// Sends `request`; a 2xx answer is parsed as `T`, any other becomes
    /// [`ClientErrorKind::Refused`] with the daemon's reason.
    async fn call<T: DeserializeOwned>(&self, request: &AdminRequest) -> Result<T, ClientError> {
        let (method, path) = request.route();
        let (status, body) = request_within(&self.socket, method, &path, self.timeout).await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| ClientError {
                kind: ClientErrorKind::Failed,
                message: format!("the daemon's answer to {method} {path} did not parse: {e}"),
            });
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => b.error,
            Err(_) => String::from_utf8_lossy(&body).into_owned(),
        };
        Err(ClientError {
            kind: ClientErrorKind::Refused(status),
            message,
        })
    }
}

/// One request with its own time limit (connecting, sending and reading the whole answer):
/// `(status, body)`.
pub async fn request_within(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, bytes::Bytes), ClientError> {
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
) -> Result<(u16, bytes::Bytes), ClientError> {
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
    Ok((status, body))
}
