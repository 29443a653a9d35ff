//! The admin API's request handling (HTTP/1.1 parsing under the admin socket's limits, routing,
//! path parameters) must answer or close for any bytes a caller sends, never panic. Each input
//! is one connection's bytes; calls that reach the daemon's loop are answered by a stand-in.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kalshi_riskd::admin::api::Reloaded;
use kalshi_riskd::admin::{AdminAnswer, AdminCall, for_caller, router};
use kalshi_riskd::http::serve::{Connections, Limits, spawn_connection};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    connections: Arc<Connections>,
    stop: CancellationToken,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<AdminCall>(64);
        rt.spawn(async move {
            while let Some(call) = rx.recv().await {
                let reloaded = format!("{:?} by {}", call.request, call.actor);
                let _ = call
                    .reply
                    .send(Ok(AdminAnswer::Reloaded(Reloaded { reloaded })));
            }
        });
        World {
            rt,
            app: router(tx),
            connections: Arc::new(Connections::default()),
            stop: CancellationToken::new(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    w.rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        spawn_connection(
            server,
            for_caller(&w.app, Some(1000)),
            Limits::ADMIN,
            w.connections.clone(),
            &w.stop,
        );
        let (mut rd, mut wr) = tokio::io::split(client);
        let writing = async {
            let _ = wr.write_all(data).await;
            let _ = wr.shutdown().await;
        };
        let mut out = Vec::new();
        let reading = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out));
        let (_, read) = tokio::join!(writing, reading);
        assert!(read.is_ok(), "the connection neither answered nor closed");
    });
});
