//! Tracing set-up: an env-filter from `ORDER_LOG`, text or JSON lines, and
//! the optional OTLP export of traces (`ORDER_OTLP_ENDPOINT`, see
//! [`crate::otlp`]) with a filter of its own, so the log level does not
//! decide what is exported.

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(config: &Config) {
    let mut filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // The export probe is for the OTLP layer, never for log lines.
    if let Ok(off) = format!("{}=off", order_core::app::projector::EXPORT_PROBE).parse() {
        filter = filter.add_directive(off);
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let otlp =
        config
            .otlp_endpoint
            .as_deref()
            .and_then(|endpoint| match crate::otlp::layer(endpoint) {
                Ok(layer) => Some(layer.with_filter(LevelFilter::INFO)),
                Err(e) => {
                    eprintln!("order-service: OTLP export off: {e}");
                    None
                }
            });
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otlp)
        .try_init();
}
