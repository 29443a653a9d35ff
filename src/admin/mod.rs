//! The admin API: HTTP/1.1 + JSON on a unix socket, for operators (through the CLI) and for
//! strategies that read their groups.
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
//! Errors are JSON `{"error": "..."}` with 404 (unknown strategy or path), 409 (refused),
//! 422 (a reload that found errors) or 503 (the daemon is stopping). Requests are answered by
//! the daemon's loop, so they see exactly what the risk core decided.
//!
//! [`api`] holds the types both ends speak, [`server`] the socket and routes, [`client`] the
//! calls the CLI and the demo make, [`table`] the `status` table.

pub mod api;
pub mod client;
pub mod server;
pub mod table;

pub use api::{AdminAnswer, AdminError, AdminRequest, AdminResult};
pub use client::{AdminClient, ClientError, ClientErrorKind, request};
pub use server::{AdminCall, SocketError, Tx, for_caller, router, serve};
pub use table::status_table;
