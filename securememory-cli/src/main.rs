//! `securememory`: tells an operator whether this host can keep secrets in memory (`doctor`) and how fast the
//! library is here (`bench`).

mod bench;
mod child;
mod cli;
mod doctor;
mod holder;
mod report;
mod sys;

use clap::Parser;

use cli::{ChildArgs, Cli, Command, Scenario};

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

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Child(args) => run_child(args),
    };
    std::process::exit(code);
}
