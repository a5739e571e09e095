//! `sonde-agent check-config`: every problem of a configuration, each with its field.

use sonde_agent::config;

pub fn command(path: &std::path::Path, no_interfaces: bool) {
    let interfaces = if no_interfaces {
        config::Interfaces::Ignore
    } else {
        config::Interfaces::MustExist
    };
    match config::load(path, interfaces) {
        Ok(c) => {
            let names: Vec<String> = c
                .accesses
                .iter()
                .map(|a| format!("{} ({} on {})", a.name, a.kind, a.interface))
                .collect();
            println!(
                "{}: valid; {} access(es): {}",
                path.display(),
                names.len(),
                names.join(", ")
            );
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            std::process::exit(sonde_cli::EXIT_USAGE);
        }
    }
}
