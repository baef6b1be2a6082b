//! Logs: `tracing` to stderr, human-readable or JSON lines, filtered by
//! `RUST_LOG` (default: the level the command asks for).

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

use stratus_runtime::config::LogFormat;

/// Installs the global subscriber. `default` applies when `RUST_LOG` is
/// unset; an unparsable `RUST_LOG` directive is skipped, not fatal.
pub fn init(format: LogFormat, default: LevelFilter) {
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
