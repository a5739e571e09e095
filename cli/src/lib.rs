//! Conventions shared by every sonde binary: usage errors are one line on stderr and
//! exit 64 (EX_USAGE) with nothing started; `RUST_LOG` filters logs (default `info`);
//! `--log-format json` switches logs to JSON lines on stderr; one way to start the
//! async runtime; and a file written whole or not at all ([`files`]).
#![warn(missing_docs)]

pub mod blocking;
pub mod files;

use clap::Parser;

/// Exit code for bad arguments or configuration (sysexits EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses the command line; on `--help`/`--version` prints and exits 0, on any error
/// prints a one-line reason naming the argument and exits [`EXIT_USAGE`].
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => exit_with_clap_error(err),
    }
}

/// Handles a clap error the sonde way (see [`parse_or_exit`]).
pub fn exit_with_clap_error(err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            std::process::exit(0)
        }
        _ => {
            eprintln!("{} (see --help)", one_line(&err.render().to_string()));
            std::process::exit(EXIT_USAGE)
        }
    }
}

/// The message part of a rendered clap error (before the usage and tips), on one line.
fn one_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    if parts.is_empty() {
        "error: invalid arguments".into()
    } else {
        parts.join(" ")
    }
}

/// Prints a one-line usage error naming the culprit and exits [`EXIT_USAGE`].
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(EXIT_USAGE)
}

/// A multi-threaded tokio runtime, or a one-line error and exit 1.
pub fn runtime_or_exit() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Installs the tracing subscriber: `RUST_LOG` (default `info`), text or JSON to stderr.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn clap_errors_fold_into_one_line_with_the_culprit() {
        let rendered = "error: the following required arguments were not provided:\n  <CMD>...\n\nUsage: x run <CMD>...\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "error: the following required arguments were not provided: <CMD>..."
        );
        let tip = "error: unexpected argument '--frob' found\n\n  tip: to pass '--frob' as a value, use '-- --frob'\n\nUsage: x\n";
        assert_eq!(one_line(tip), "error: unexpected argument '--frob' found");
        assert_eq!(one_line(""), "error: invalid arguments");
    }
}
