//! `sonde-agent enroll`: a one-time token for an identity.

use sonde_agent::identity;
use std::time::Duration;

pub fn command(
    collector: &str,
    token: &sonde_proto::wire::EnrolToken,
    state_dir: &std::path::Path,
) {
    if collector
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        sonde_cli::usage_error(format!("--collector {collector:?} is not HOST:PORT"));
    }
    let runtime = sonde_cli::runtime_or_exit();
    let result = runtime.block_on(identity::enroll(
        collector,
        token,
        state_dir,
        Duration::from_secs(15),
    ));
    match result {
        Ok(id) => {
            println!(
                "enrolled as {} (building {}, quartier {}); identity in {}",
                id.info.agent_id,
                id.info.building,
                id.info.quartier,
                state_dir.display()
            );
        }
        Err(e @ identity::IdentityError::AlreadyEnrolled { .. }) => sonde_cli::usage_error(e),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
