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

/// The command definition users see.
#[cfg(unix)]
fn user_command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

#[cfg(unix)]
fn print_completions(shell: clap_complete::Shell) -> i32 {
    let mut command = user_command();
    clap_complete::generate(shell, &mut command, "securememory", &mut std::io::stdout());
    0
}

#[cfg(unix)]
fn print_man_page() -> i32 {
    match clap_mangen::Man::new(user_command()).render(&mut std::io::stdout()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("securememory: could not write the man page: {e}");
            1
        }
    }
}

#[cfg(unix)]
fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == child::CHILD_SUBCOMMAND) {
        args.remove(1);
        std::process::exit(run_child(&ChildArgs::parse_from(args)));
    }
    let cli = Cli::parse_from(args);
    let code = match &cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Completions { shell } => print_completions(*shell),
        Command::Man => print_man_page(),
    };
    std::process::exit(code);
}

#[cfg(not(unix))]
fn main() {
    eprintln!("securememory: doctor and bench need a Unix host (they prove guarantees with fork, faults and core files)");
    std::process::exit(2);
}
