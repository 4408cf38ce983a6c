//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};

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
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer, shorter repetitions: the whole run takes well under 30 seconds.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Repetitions each median is taken over (default 11, or 7 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub reps: Option<u64>,
}

/// Which kind of secret a child scenario holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Flavour {
    /// A bare `memcall::Region`, locked and no-access at rest: the page layer under both flavours.
    #[value(name = "memcall-region")]
    Region,
    /// `securememory::ProtectedMemorySecret`.
    #[value(name = "protected-memory")]
    ProtectedMemory,
    /// `securememory::MemguardSecret` (guard pages and canary).
    #[value(name = "memguard")]
    Memguard,
}

impl Flavour {
    pub const ALL: [Flavour; 3] = [Flavour::Region, Flavour::ProtectedMemory, Flavour::Memguard];

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Region => "memcall-region",
            Flavour::ProtectedMemory => "protected-memory",
            Flavour::Memguard => "memguard",
        }
    }
}

/// Internal: one scenario run in a child process by `doctor` (`securememory __child <scenario>`). Kept out of
/// [`Cli`] so that help, completions and the man page show only what users run.
#[derive(Debug, Parser)]
#[command(name = "securememory __child", hide = true)]
pub struct ChildArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Probe kernel features that could kill the caller under a strict seccomp filter.
    Probe,
    /// Allocate secrets until the locked-memory limit stops us; print how many fitted.
    Fill {
        #[arg(long, value_enum)]
        flavour: Flavour,
        #[arg(long)]
        size: usize,
        /// Stop after this many even if nothing failed.
        #[arg(long)]
        cap: u64,
        /// Give up CAP_IPC_LOCK first, so the limit binds as for an unprivileged service.
        #[arg(long)]
        drop_ipc_lock: bool,
    },
    /// Hold a secret, then read its page outside an access window (must die of SIGSEGV).
    Fault {
        #[arg(long, value_enum)]
        flavour: Flavour,
        /// Touch the first byte after the data (the trailing guard page) instead of the data.
        #[arg(long)]
        past_end: bool,
    },
    /// Hold one secret per flavour and a heap marker, then abort to dump core into the working directory.
    Core,
    /// Hold a secret, fork, and try to read it from the forked child.
    Fork {
        #[arg(long, value_enum)]
        flavour: Flavour,
    },
}
