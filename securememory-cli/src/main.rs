//! `securememory`: tells an operator whether this host can keep secrets in memory (`doctor`) and how fast the
//! library is here (`bench`).

// The doctor re-runs itself as child processes that fault, fork and dump core: Unix only.
#[cfg(unix)]
mod bench;
#[cfg(unix)]
mod child;
#[cfg(unix)]
mod cli;
#[cfg(unix)]
mod doctor;
#[cfg(unix)]
mod holder;
#[cfg(unix)]
mod report;
#[cfg(unix)]
mod sys;

#[cfg(unix)]
use clap::Parser;

#[cfg(unix)]
use cli::{ChildArgs, Cli, Command, Scenario};

#[cfg(unix)]
fn run_child(args: &ChildArgs) -> i32 {
    match &args.scenario {
        Scenario::Probe => {
            child::emit(&doctor::host::kernel_probes());
            0
        }
        Scenario::Fill {
            flavour,
            size,
            cap,
            drop_ipc_lock,
        } => {
            child::emit(&doctor::capacity::fill(
                *flavour,
                *size,
                *cap,
                *drop_ipc_lock,
            ));
            0
        }
        Scenario::Fault { flavour, past_end } => doctor::scenarios::fault(*flavour, *past_end),
        Scenario::Core => doctor::scenarios::core(),
        Scenario::Fork { flavour } => doctor::scenarios::fork(*flavour),
    }
}

#[cfg(unix)]
fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Child(args) => run_child(args),
    };
    std::process::exit(code);
}

#[cfg(not(unix))]
fn main() {
    eprintln!("securememory: doctor and bench need a Unix host (they prove guarantees with fork, faults and core files)");
    std::process::exit(2);
}
