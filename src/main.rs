//! The `edgecron` command: `serve` runs the service, `next` previews a
//! schedule. This file maps every top-level failure to an exit code.

use std::process::ExitCode;
use std::rc::Rc;

use async_executor::LocalExecutor;

use edgecron::config::{self, Config};
use edgecron::scheduler::Scheduler;
use edgecron::store::Store;

const USAGE: &str = "Usage: edgecron <COMMAND>

Commands:
  serve         run the scheduler and its HTTP API (see `edgecron serve --help`)
  next          print the next fire times of a cron expression (see `edgecron next --help`)
  task          list, show, add, update, remove or run tasks (see `edgecron task --help`)
  runs          list a task's runs
  dead-letters  list dead letters
  version       print the version
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("next") => ExitCode::from(edgecron::cron::run_next_command(&args[1..]) as u8),
        Some("task" | "runs" | "dead-letters") => ExitCode::from(edgecron::client::run(&args)),
        Some("version" | "--version" | "-V") => {
            println!("edgecron {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", config::help());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(args, &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("edgecron: {err}");
            return ExitCode::from(2);
        }
    };
    edgecron::logging::init(config.log_level, config.log_format);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("event=fatal error=\"{err}\"");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&config.db_path)
        .map_err(|e| format!("cannot open {}: {e}", config.db_path.display()))?;
    let executor = Rc::new(LocalExecutor::new());
    let scheduler = Scheduler::new(store, config.clone(), Rc::clone(&executor))?;

    let (calls_tx, calls_rx) = async_channel::bounded(64);
    let addr = edgecron::api::start(config.listen, config.http, config.access.clone(), calls_tx)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    log::info!(
        "event=started version={} listen={addr} db={} token={} metrics_public={}",
        env!("CARGO_PKG_VERSION"),
        config.db_path.display(),
        if config.access.token.is_some() {
            "required"
        } else {
            "none"
        },
        config.access.metrics_public
    );
    futures_lite::future::block_on(executor.run(scheduler.run(calls_rx)));
    log::info!("event=stopped");
    Ok(())
}
