//! Signals and the service manager: SIGUSR1 (the kill switch) is caught from the first
//! instruction of `main`; SIGHUP reloads; SIGTERM and SIGINT stop. Notifications to systemd
//! (`READY`, `RELOADING`, `STOPPING`, the watchdog) never wait.

use std::sync::atomic::AtomicBool;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Set by SIGUSR1 from the moment the process starts (registered before the runtime exists),
/// so a kill sent during start-up is not lost.
pub static KILL_SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Set by SIGUSR1 like [`KILL_SIGNALLED`], and never cleared: a stop asked for during start-up
/// does not cut start-up short once a kill was signalled, so that the kill is engaged and
/// persisted before the daemon stops.
pub static KILL_SEEN: AtomicBool = AtomicBool::new(false);

/// Registers the SIGUSR1 flags. Call first thing in `main`, before any thread starts.
pub fn register_early_signals() -> std::io::Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, &KILL_SIGNALLED)?;
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, &KILL_SEEN).map(drop)
}

/// Tells the service manager about a state change, without ever waiting for it: the send is
/// non-blocking, so a manager that stops reading (its socket buffer full) costs a dropped
/// notification and a warning, never a stalled risk loop.
pub(super) fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), states) {
        tracing::warn!(error = %e, "service manager notification not sent");
    }
}

pub(super) fn notify_to(
    socket: Option<&std::ffi::OsStr>,
    states: &[sd_notify::NotifyState],
) -> std::io::Result<()> {
    let Some(path) = socket else {
        return Ok(());
    };
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_nonblocking(true)?;
    let sent = sock.send(msg.as_bytes())?;
    if sent != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete notification",
        ));
    }
    Ok(())
}

/// The signal streams the loop listens to. Opened first thing at start: from then on SIGHUP,
/// SIGTERM and SIGINT are handled, not fatal.
pub(super) struct Signals {
    pub usr1: Signal,
    pub hup: Signal,
    pub term: Signal,
    pub int: Signal,
}

impl Signals {
    pub(super) fn open() -> std::io::Result<Self> {
        Ok(Signals {
            usr1: signal(SignalKind::user_defined1())?,
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}
