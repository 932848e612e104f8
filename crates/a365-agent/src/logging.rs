//! Where the log goes: the terminal, a file (`--daemon`, launchd), or the
//! journal when systemd runs the agent.
//!
//! Under systemd, stderr is a stream into journald and `JOURNAL_STREAM`
//! names it. Then the agent writes to the journal natively (tracing-journald):
//! each line keeps its priority (so `journalctl -p warning` works) and its
//! fields (`PROFILE=work`) as journal fields, and journald adds the
//! timestamp. Should the journal socket be unusable, stderr lines carry
//! `<N>` syslog-priority prefixes instead, which journald also understands.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(level: &str) {
    use std::io::IsTerminal;
    let filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    if stderr_is_journal() {
        #[cfg(target_os = "linux")]
        if let Ok(journal) = tracing_journald::layer() {
            use tracing_journald::{Priority, PriorityMappings};
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            // The same priorities as the <N> fallback: info is 6, not
            // tracing-journald's default "notice" (5).
            let journal = journal
                .with_syslog_identifier("a365-agent".into())
                .with_priority_mappings(PriorityMappings {
                    error: Priority::Error,
                    warn: Priority::Warning,
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    trace: Priority::Debug,
                });
            tracing_subscriber::registry()
                .with(filter())
                .with(journal)
                .init();
            return;
        }
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(SyslogPrefix(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// True when `JOURNAL_STREAM` names our stderr: the variable alone may be
/// inherited by a program whose stderr goes elsewhere.
// st_dev is u64 on Linux but i32 on macOS.
#[allow(clippy::unnecessary_cast)]
fn stderr_is_journal() -> bool {
    #[cfg(unix)]
    {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
            return false;
        };
        journal_stream_is(
            &value.to_string_lossy(),
            stat.st_dev as u64,
            stat.st_ino as u64,
        )
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
#[cfg_attr(not(unix), allow(dead_code))]
fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Prefixes each line with `<N>`, its syslog priority, for journald.
struct SyslogPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
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
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3) priorities: err 3, warning 4, info 6, debug 7.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_this_stream() {
        assert!(journal_stream_is("8:12345", 8, 12345));
        assert!(!journal_stream_is("8:12345", 8, 12346));
        assert!(!journal_stream_is("9:12345", 8, 12345));
        assert!(!journal_stream_is("", 8, 12345));
        assert!(!journal_stream_is("8-12345", 8, 12345));
    }

    #[test]
    fn priorities_are_syslog_ones() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
