//! `sonde-agent`: measures an access (throughput, latency, loss) against a
//! `sonde-responder`. This binary parses the command line, checks it before anything
//! starts (exit 64), and hands each command to its file under `cli/`; the measuring
//! lives in the library.

mod cli;

use cli::{Cli, Command};

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(cli.log_format);
    match cli.command {
        Command::Probe(args) => cli::probe::command(*args),
        Command::CheckConfig {
            config,
            no_interfaces,
        } => cli::check::command(&config, no_interfaces),
        Command::Run { config } => cli::run::command(&config),
        Command::Discover => {
            use sonde_agent::context::discover;
            print!("{}", discover::skeleton(&discover::discover()));
        }
        Command::Enroll {
            collector,
            token,
            state_dir,
        } => cli::enroll::command(&collector, &token, &state_dir),
        Command::Status { state_dir, json } => cli::status::command(&state_dir, json),
        Command::Key { action } => cli::key::command(action),
    }
}
