//! `securememory`: tells an operator whether this host can keep secrets in memory (`doctor`) and how fast the
//! library is here (`bench`).

#![forbid(unsafe_code)]

// The doctor re-runs itself as child processes that fault, fork and dump core: Unix only.
#[cfg(unix)]
mod bench;
#[cfg(unix)]
mod cli;
#[cfg(unix)]
mod doctor;
#[cfg(unix)]
mod report;

#[cfg(unix)]
use clap::Parser;

#[cfg(unix)]
use cli::{Cli, Command};

/// The hidden first argument that starts a registry scenario in a child process (see `proofs::child`).
#[cfg(unix)]
pub const CHILD_SUBCOMMAND: &str = "__child";

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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == CHILD_SUBCOMMAND) {
        proofs::dispatch(&[]);
        eprintln!("securememory: {CHILD_SUBCOMMAND} is internal to the doctor");
        std::process::exit(2);
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
