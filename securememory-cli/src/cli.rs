//! Command-line arguments.

use clap::{Args, Parser, Subcommand};

/// Can this host keep secrets in memory, and how fast?
///
/// `doctor` checks the locked-memory budget, core-dump settings and per-region protections, and proves in child
/// processes that protected secrets fault when touched, stay out of core files and are not readable by forked
/// children. `bench` times the library against the system-call floor measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "securememory", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check whether this host can keep secrets; exit status 0 only when every guarantee holds here.
    Doctor(DoctorArgs),
    /// Time secret access, allocation, buffers, enclaves and streams against the same-run system-call floor.
    Bench(BenchArgs),
    /// Print a shell completion script (e.g. `securememory completions bash > ~/.local/share/bash-completion/completions/securememory`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `securememory man > ~/.local/share/man/man1/securememory.1`.
    Man,
}

/// The largest `--expect`: a trillion secrets, far past any host's memory; larger numbers are a usage error.
pub const MAX_EXPECT: u64 = 1_000_000_000_000;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Size in bytes of one secret, for the "how many fit" figures.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub size: u64,
    /// How many live secrets of --size the service needs at once (at most 10^12); fewer fitting under the
    /// locked-memory limit is a failure.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_EXPECT))]
    pub expect: u64,
    /// Treat checks that cannot be carried out on this host (for example a core file piped elsewhere) as
    /// failures.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Keep each check's evidence on the check's own line, however wide (the text otherwise goes on indented
    /// lines wrapped to 100 columns).
    #[arg(long)]
    pub wide: bool,
    /// Live sealed secrets the sealed capacity check holds (default: --expect, at least 100,000 and at most
    /// 1,000,000, fewer when they would need more than 1 GiB at --size).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub sealed_check: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer, shorter repetitions (and 20,000 rather than 100,000 live secrets for the memory row): the whole
    /// run takes well under 30 seconds.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when any row that has a goal misses it (for CI and scripts; a plain run only
    /// reports).
    #[arg(long)]
    pub check: bool,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Repetitions each median is taken over (default 11, or 7 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub reps: Option<u64>,
}
