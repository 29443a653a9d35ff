//! Logging, to stderr. Under systemd stderr is the journal (`JOURNAL_STREAM` names it): there
//! each line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>`
//! debug and trace), which journald takes as the entry's priority and strips, so
//! `journalctl -p err -u kalshi-riskd` finds the errors. Colours only on a terminal. The filter
//! (`RUST_LOG`, default `info`) can be replaced while the daemon runs ([`set_filter`]).

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the running filter; set once logging is up.
static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Starts logging to stderr in `format` (once per process; later calls do nothing).
pub fn init(log_format: LogFormat) {
    let journal = stderr_is_journal();
    let ansi = !journal && std::io::stderr().is_terminal();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let started = match log_format {
        LogFormat::Json => {
            let builder = builder
                .fmt_fields(JsonFields::new())
                .event_format(Prioritised {
                    inner: format::format().json().flatten_event(true),
                    journal,
                })
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map(|()| keep(move |f| handle.reload(f)))
        }
        LogFormat::Pretty => {
            let builder = builder
                .event_format(Prioritised {
                    inner: format::format().with_ansi(ansi),
                    journal,
                })
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map(|()| keep(move |f| handle.reload(f)))
        }
    };
    // A second init in one process (the tests, the demo) keeps the first.
    drop(started);
}

fn keep<E: fmt::Display>(reload: impl Fn(EnvFilter) -> Result<(), E> + Send + Sync + 'static) {
    let _ = RELOAD.set(Box::new(move |f| reload(f).map_err(|e| e.to_string())));
}

/// Replaces the log filter (`RUST_LOG` syntax: `debug`, `info,riskd_kalshi=debug`, ...);
/// returns the filter now in force.
pub fn set_filter(spec: &str) -> Result<String, String> {
    let filter = EnvFilter::builder()
        .parse(spec)
        .map_err(|e| format!("{spec:?} is not a log filter: {e}"))?;
    let shown = filter.to_string();
    let reload = RELOAD
        .get()
        .ok_or_else(|| "logging is not started in this process".to_owned())?;
    reload(filter)?;
    Ok(shown)
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` is `device:inode` of it.
fn stderr_is_journal() -> bool {
    let Some(named) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    named == format!("{}:{}", st.st_dev, st.st_ino)
}

/// The syslog priority journald reads from a line's `<N>` prefix.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// A line format with the syslog priority in front when writing to the journal.
struct Prioritised<F> {
    inner: F,
    journal: bool,
}

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.journal {
            write!(writer, "<{}>", priority(event.metadata().level()))?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::TRACE), 7);
    }

    #[test]
    fn a_bad_filter_is_refused_with_why() {
        let e = set_filter("info,[").unwrap_err();
        assert!(e.contains("is not a log filter"), "{e}");
    }
}
