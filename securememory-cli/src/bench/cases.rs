//! The benchmark set of the speed goals: each case with the baseline it is divided by and its goal.

use super::floor::{AeadSealOpen, AesGcmOpen, FloorPair, Getrandom32};
use super::library;
use super::secret_memory;
use super::stats::Workload;

const MIB: usize = 1 << 20;

pub type Make = fn() -> Result<Box<dyn Workload>, String>;

/// What a case's figure is compared with. Every baseline is measured again for each case, interleaved with
/// it, so both see the same machine load.
#[derive(Clone, Copy)]
pub enum Baseline {
    /// The mprotect(READ) + mprotect(NONE) pair on one locked page.
    Floor,
    /// The same pair on a 256-page (1 MiB) locked region.
    Floor256,
    /// The one-page pair plus one 32-byte getrandom.
    FloorPlusGetrandom,
    /// The one-page pair plus an AEAD seal and open of 32 bytes: the floor under an enclave.
    FloorPlusAead32,
    /// AEAD seal and open of 1 MiB in memguard's stream chunk size: the floor under a stream.
    AeadStream1MiB,
    /// A protected-memory 1 MiB `with_bytes` plus an AES-256-GCM open of 1 MiB: the floor under a 1 MiB
    /// sealed secret's access (page protection of the plaintext, and decrypting it).
    Protected1MiBPlusAesOpen,
    /// Another workload (for example the one-thread figure for the two-thread case).
    Workload(&'static str, Make),
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Floor => "floor",
            Baseline::Floor256 => "floor_256_pages",
            Baseline::FloorPlusGetrandom => "floor+getrandom32",
            Baseline::FloorPlusAead32 => "floor+aead32",
            Baseline::AeadStream1MiB => "aead_1_MiB_in_chunks",
            Baseline::Protected1MiBPlusAesOpen => "with_bytes/1_MiB+aes256gcm_open_1_MiB",
            Baseline::Workload(name, _) => name,
        }
    }

    /// The workloads whose figures add up to the baseline.
    pub fn components(self) -> Result<Vec<Box<dyn Workload>>, String> {
        Ok(match self {
            Baseline::Floor => vec![Box::new(FloorPair::new(1)?)],
            Baseline::Floor256 => vec![Box::new(FloorPair::new(256)?)],
            Baseline::FloorPlusGetrandom => {
                vec![Box::new(FloorPair::new(1)?), Box::new(Getrandom32::new())]
            }
            Baseline::FloorPlusAead32 => vec![
                Box::new(FloorPair::new(1)?),
                Box::new(AeadSealOpen::new(32, 32)),
            ],
            Baseline::AeadStream1MiB => vec![Box::new(AeadSealOpen::new(
                MIB,
                memguard::stream_chunk_size(),
            ))],
            Baseline::Protected1MiBPlusAesOpen => {
                vec![library::with_bytes_1mib()?, Box::new(AesGcmOpen::new(MIB)?)]
            }
            Baseline::Workload(_, make) => vec![make()?],
        })
    }
}

/// The goal, as a threshold in nanoseconds derived from the same-run baseline components.
#[derive(Clone, Copy)]
pub enum Goal {
    /// At most `k` × the baseline.
    Ratio(f64),
    /// At most `k` × the floor plus one getrandom (baseline `FloorPlusGetrandom`).
    FloorTimesPlusRandom(f64),
    /// At most this many nanoseconds.
    AtMostNs(f64),
    /// No goal: a reference figure shown for orientation.
    Reference,
}

impl Goal {
    pub fn threshold(self, components: &[f64]) -> f64 {
        match self {
            Goal::Ratio(k) => k * components.iter().sum::<f64>(),
            Goal::FloorTimesPlusRandom(k) => {
                k * components.first().copied().unwrap_or(f64::NAN)
                    + components.get(1).copied().unwrap_or(0.0)
            }
            Goal::AtMostNs(ns) => ns,
            Goal::Reference => f64::NAN,
        }
    }

    pub fn describe(self, baseline: Baseline) -> String {
        match self {
            Goal::Ratio(k) => format!("<= {k:.2} x {}", baseline.name()),
            Goal::FloorTimesPlusRandom(k) => format!("<= {k:.1} x floor + getrandom32"),
            Goal::AtMostNs(ns) => format!("<= {}", crate::report::nanos(ns)),
            Goal::Reference => "reference".to_owned(),
        }
    }
}

pub struct Case {
    pub name: &'static str,
    pub baseline: Baseline,
    pub goal: Goal,
    pub make: Make,
    /// Upper bound on operations per timed batch (slow cases would otherwise calibrate to too few).
    pub max_iters: u64,
}

const MANY: u64 = 10_000_000;

/// Every case, in table order.
pub fn all() -> Vec<Case> {
    let case = |name, baseline, goal, make: Make| Case {
        name,
        baseline,
        goal,
        make,
        max_iters: MANY,
    };
    vec![
        case(
            "with_bytes/protected_memory",
            Baseline::Floor,
            Goal::Ratio(1.10),
            library::with_bytes_protected,
        ),
        case(
            "with_bytes/memguard",
            Baseline::Floor,
            Goal::Ratio(1.10),
            library::with_bytes_memguard,
        ),
        case(
            "with_bytes/2_threads_one_secret",
            Baseline::Workload("with_bytes/protected_memory", library::with_bytes_protected),
            Goal::Ratio(0.5),
            library::with_bytes_two_threads,
        ),
        case(
            "with_bytes/1_MiB",
            Baseline::Floor256,
            Goal::Ratio(1.10),
            library::with_bytes_1mib,
        ),
        case(
            "new_close/protected_memory",
            Baseline::Floor,
            Goal::Ratio(1.5),
            library::new_close_protected,
        ),
        case(
            "new_close/memguard",
            Baseline::Floor,
            Goal::Ratio(2.0),
            library::new_close_memguard,
        ),
        case(
            "create_random_close/protected_memory",
            Baseline::FloorPlusGetrandom,
            Goal::FloorTimesPlusRandom(1.5),
            library::create_random_close_protected,
        ),
        case(
            "create_random_close/memguard",
            Baseline::FloorPlusGetrandom,
            Goal::FloorTimesPlusRandom(2.0),
            library::create_random_close_memguard,
        ),
        case(
            "locked_buffer/new_destroy",
            Baseline::Floor,
            Goal::Ratio(2.0),
            library::buffer_new_destroy,
        ),
        case(
            "enclave/seal_open",
            Baseline::FloorPlusAead32,
            Goal::Ratio(1.3),
            library::enclave_seal_open,
        ),
        Case {
            max_iters: 10_000,
            ..case(
                "stream/1_MiB_write_read",
                Baseline::AeadStream1MiB,
                Goal::Ratio(1.3),
                library::stream_1mib,
            )
        },
        Case {
            max_iters: 10_000,
            ..case(
                "secret_stream/1_MiB_write_read",
                Baseline::Floor256,
                Goal::AtMostNs(1_000_000.0),
                library::secret_stream_1mib,
            )
        },
        case(
            "aead/seal_open_32B",
            Baseline::Floor,
            Goal::Reference,
            || Ok(Box::new(AeadSealOpen::new(32, 32))),
        ),
        Case {
            max_iters: 10_000,
            ..case(
                "aead/1_MiB_in_stream_chunks",
                Baseline::Floor256,
                Goal::Reference,
                || {
                    Ok(Box::new(AeadSealOpen::new(
                        MIB,
                        memguard::stream_chunk_size(),
                    )))
                },
            )
        },
        case(
            "with_bytes/protected_memory/secret_memory",
            Baseline::Workload("with_bytes/protected_memory", library::with_bytes_protected),
            Goal::Ratio(1.10),
            secret_memory::with_bytes_protected,
        ),
        case(
            "with_bytes/memguard/secret_memory",
            Baseline::Workload("with_bytes/memguard", library::with_bytes_memguard),
            Goal::Ratio(1.10),
            secret_memory::with_bytes_memguard,
        ),
        case(
            "new_close/protected_memory/secret_memory",
            Baseline::Workload("new_close/protected_memory", library::new_close_protected),
            Goal::Ratio(1.5),
            secret_memory::new_close_protected,
        ),
        case(
            "new_close/memguard/secret_memory",
            Baseline::Workload("new_close/memguard", library::new_close_memguard),
            Goal::Ratio(1.5),
            secret_memory::new_close_memguard,
        ),
        case(
            "with_bytes/sealed",
            Baseline::Workload("with_bytes/protected_memory", library::with_bytes_protected),
            Goal::Ratio(1.5),
            library::with_bytes_sealed,
        ),
        case(
            "new_close/sealed",
            Baseline::Workload("new_close/protected_memory", library::new_close_protected),
            Goal::Ratio(0.5),
            library::new_close_sealed,
        ),
        case(
            "create_random_close/sealed",
            Baseline::Workload(
                "create_random_close/protected_memory",
                library::create_random_close_protected,
            ),
            Goal::Ratio(0.75),
            library::create_random_close_sealed,
        ),
        case(
            "with_bytes/sealed/2_threads",
            Baseline::Workload("with_bytes/sealed", library::with_bytes_sealed),
            Goal::Ratio(0.5),
            library::with_bytes_sealed_two_threads,
        ),
        Case {
            max_iters: 10_000,
            ..case(
                "with_bytes/sealed/1_MiB",
                Baseline::Protected1MiBPlusAesOpen,
                Goal::Ratio(1.3),
                library::with_bytes_sealed_1mib,
            )
        },
        Case {
            max_iters: 10_000,
            ..case(
                "aead/aes256gcm_open_1_MiB",
                Baseline::Floor256,
                Goal::Reference,
                || Ok(Box::new(AesGcmOpen::new(MIB)?)),
            )
        },
        case(
            "memcall/region_alloc_lock_free",
            Baseline::Floor,
            Goal::Reference,
            library::region_alloc_lock_free,
        ),
    ]
}

/// The Go libraries' figure for the same work on this kind of machine, from the speed issue's table; shown for
/// orientation only (it was not measured in this run).
pub fn go_reference_ns(name: &str) -> Option<f64> {
    Some(match name {
        "with_bytes/protected_memory" | "with_bytes/2_threads_one_secret" => 2_700.0,
        "with_bytes/1_MiB" => 20_300.0,
        "new_close/protected_memory" => 25_300.0,
        "new_close/memguard" => 48_200.0,
        "create_random_close/protected_memory" => 24_700.0,
        "create_random_close/memguard" => 47_500.0,
        "locked_buffer/new_destroy" => 42_500.0,
        "enclave/seal_open" => 119_700.0,
        "stream/1_MiB_write_read" => 13_300_000.0,
        _ => return None,
    })
}
