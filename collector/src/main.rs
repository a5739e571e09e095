//! `sonde-collector`: enrols agents, ingests their results over QUIC, stores them and
//! serves them. This binary parses the command line and hands each command to its
//! file under `cli/`; the collector itself is the library (`server::run`).

mod cli;

use cli::{
    AgentCommand, Cli, Command, KeysCommand, LogCommand, PlanCommand, ReportAction, TokenCommand,
};

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(cli.log_format);
    let code = match cli.command {
        Command::Serve { config } => cli::serve::serve(&config),
        Command::CheckConfig { config } => cli::serve::check(&config),
        Command::Token(TokenCommand::Create {
            building,
            quartier,
            ttl,
            latitude,
            longitude,
            config,
        }) => cli::token::create(&config.path, building, quartier, ttl, latitude, longitude),
        Command::Import { file, config, db } => match (config, db) {
            (_, Some(db)) => cli::import::import(&file, || {
                cli::common::open_store(&db).map(|s| Box::new(s) as Box<dyn sonde_store::Store>)
            }),
            (Some(config), None) => {
                let config = cli::common::load_config(&config);
                cli::import::import(&file, || cli::common::open_configured(&config))
            }
            (None, None) => {
                sonde_cli::usage_error("import needs --config FILE (the collector's) or --db PATH")
            }
        },
        Command::Agent(AgentCommand::Revoke { id, config }) => {
            cli::agent::revoke(&config.path, &id)
        }
        Command::Plan(PlanCommand::Apply {
            file,
            check,
            config,
        }) => cli::plan::apply(&config.path, &file, check),
        Command::Plan(PlanCommand::Show {
            version,
            quartier,
            building,
            history,
            json,
            config,
        }) => {
            let site = quartier.zip(building);
            cli::plan::show(&config.path, version, site, history, json)
        }
        Command::Plan(PlanCommand::Diff {
            file,
            from,
            to,
            config,
        }) => cli::plan::diff(&config.path, file.as_deref(), from, to),
        Command::Migrate { from, to } => cli::migrate::migrate(&from, &to),
        Command::Backup { out, config } => cli::backup::backup(&config.path, &out),
        Command::Restore { from, config } => cli::backup::restore(&config.path, &from),
        Command::Agent(AgentCommand::List { config }) => cli::agent::list(&config.path),
        Command::Keys(KeysCommand::Rotate {
            report_key,
            ca: _,
            config,
        }) => cli::keys::rotate(&config.path, report_key),
        Command::Report { action, args } => match action {
            Some(ReportAction::Verify { file, key }) => cli::report::verify(&file, key.as_deref()),
            Some(ReportAction::Key { config }) => cli::report::key(&config.path),
            None => cli::report::write(args),
        },
        Command::Log(LogCommand::Verify {
            url,
            key,
            state,
            count,
            every,
        }) => cli::log::verify(&url, &key, state.as_deref(), count, every),
    };
    std::process::exit(code);
}
