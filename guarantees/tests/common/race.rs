//! The race workload `races.rs` and `sealed_races.rs` share: reader threads make accesses across 64 shared
//! secrets (some through readers, and the last one also closing a secret now and then) while churn threads keep
//! closing secrets and putting new ones in their place. Every access must give the exact bytes of the secret it
//! reached or `Error::Closed`; what each proof adds (its secrets, its pace, what it checks afterwards) is a
//! [`Workload`] and the caller's own checks.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use securememory::{Error, Secret};

use super::{ensure, is_pattern, xorshift};

pub const SLOTS: usize = 64;
pub const READERS: usize = 12;
/// Of the readers, how many go through `SecretReader` instead of a closure.
pub const STREAM_READERS: usize = 3;
pub const CHURNERS: usize = 2;

/// A shared secret and the id of the pattern it holds.
pub type Slot<S> = Mutex<(u64, Arc<S>)>;

/// What one race proof races: its secrets and its pace.
pub struct Workload<S: ?Sized> {
    /// A new secret holding pattern `id` over [`len_of`]`(id)` bytes.
    pub new_secret: fn(u64) -> securememory::Result<Arc<S>>,
    /// Whether a closure on the secret's bytes sees exactly pattern `id` ([`holds`]), through the access path
    /// the proof is about.
    pub holds: fn(&S, u64) -> securememory::Result<bool>,
    /// The last reader also closes one secret in this many, racing the churn threads' own closes of it.
    pub reader_closes_one_in: u64,
    /// A pause after each replacement, so the churn does not starve slow readers of the machine's cores.
    pub churn_pause: Option<Duration>,
}

/// Sizes: keys, odd sizes, one page and past it.
pub fn len_of(id: u64) -> usize {
    [32, 1, 4096, 4097, 100, 33][id as usize % 6]
}

/// True when `bytes` are exactly what secret `id` holds.
pub fn holds(id: u64, bytes: &[u8]) -> bool {
    is_pattern(id, bytes) && bytes.len() == len_of(id)
}

/// Tallies of what the readers saw.
#[derive(Default)]
pub struct Tally {
    pub exact: AtomicUsize,
    pub closed: AtomicUsize,
    pub replaced: AtomicUsize,
    problems: Mutex<Vec<String>>,
    /// `VmLck` once the 64 secrets exist: shows a baseline comparison is about memory that was really locked.
    pub locked_while_live: AtomicU64,
}

impl Tally {
    pub fn problem(&self, what: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < 20 {
            problems.push(what);
        }
    }

    pub fn problems(self) -> Vec<String> {
        self.problems
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that no reader saw a problem, that each of `accesses` per reader gave the exact bytes or the
    /// closed error, and that both happened.
    pub fn check(self, accesses: usize) -> Result<(), String> {
        let exact = self.exact.load(Ordering::Relaxed);
        let closed = self.closed.load(Ordering::Relaxed);
        let problems = self.problems();
        ensure(problems.is_empty(), || problems.join("\n"))?;
        ensure(exact + closed == READERS * accesses, || {
            format!(
                "{exact} + {closed} results for {} accesses",
                READERS * accesses
            )
        })?;
        ensure(exact > 0 && closed > 0, || {
            "the workload did not mix successful and closed accesses".into()
        })
    }
}

impl<S: Secret + ?Sized> Workload<S> {
    /// One access to secret `id`: its exact bytes or the closed error, tallied.
    pub fn access(&self, tally: &Tally, id: u64, secret: &S, through_reader: bool) {
        let result = if through_reader {
            read_all(secret).map(|bytes| holds(id, &bytes))
        } else {
            (self.holds)(secret, id)
        };
        match result {
            Ok(true) => {
                tally.exact.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => tally.problem(format!("secret {id}: wrong bytes")),
            Err(Error::Closed) => {
                tally.closed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.problem(format!("secret {id}: unexpected error {e:?}")),
        }
    }

    /// [`SLOTS`] new secrets, their ids taken from `ids`.
    pub fn new_slots(&self, ids: &AtomicU64) -> securememory::Result<Vec<Slot<S>>> {
        (0..SLOTS)
            .map(|_| {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                (self.new_secret)(id).map(|s| Mutex::new((id, s)))
            })
            .collect()
    }

    fn churn(
        &self,
        slots: &[Slot<S>],
        tally: &Tally,
        ids: &AtomicU64,
        done: &AtomicBool,
        seed: u64,
    ) {
        let mut rng = seed;
        while !done.load(Ordering::Relaxed) {
            let slot = &slots[xorshift(&mut rng) as usize % SLOTS];
            let id = ids.fetch_add(1, Ordering::Relaxed);
            let fresh = match (self.new_secret)(id) {
                Ok(s) => s,
                Err(e) => return tally.problem(format!("creating secret {id}: {e}")),
            };
            let close_first = xorshift(&mut rng) % 2 == 0;
            let old = {
                let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
                if close_first {
                    // Close while still published: readers that pick it up now get the closed error.
                    if let Err(e) = guard.1.close() {
                        tally.problem(format!("closing secret {}: {e}", guard.0));
                    }
                }
                std::mem::replace(&mut *guard, (id, fresh))
            };
            // Otherwise close after unpublishing, while readers that took it may still be inside.
            if let Err(e) = old.1.close() {
                tally.problem(format!("closing secret {}: {e}", old.0));
            }
            tally.replaced.fetch_add(1, Ordering::Relaxed);
            if let Some(pause) = self.churn_pause {
                std::thread::sleep(pause);
            }
        }
    }

    /// One round of the workload: `accesses` per reader thread, then every secret closed.
    pub fn round(&self, accesses: usize) -> Result<Tally, Box<dyn std::error::Error>> {
        let ids = AtomicU64::new(0);
        let slots = self.new_slots(&ids)?;
        let tally = Tally::default();
        tally
            .locked_while_live
            .store(guarantees::proc_stats::locked(), Ordering::Relaxed);
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let churners: Vec<_> = (0..CHURNERS)
                .map(|c| {
                    let (slots, tally, ids, done) = (&slots, &tally, &ids, &done);
                    scope.spawn(move || self.churn(slots, tally, ids, done, 0x9E37_79B9 + c as u64))
                })
                .collect();
            let readers: Vec<_> = (0..READERS)
                .map(|r| {
                    let (slots, tally) = (&slots, &tally);
                    scope.spawn(move || {
                        let mut rng = 0x2545_F491_4F6C_DD1D ^ (r as u64 + 1);
                        for _ in 0..accesses {
                            let (id, secret) = pick(slots, &mut rng);
                            self.access(tally, id, &secret, r < STREAM_READERS);
                            if r == READERS - 1
                                && xorshift(&mut rng) % self.reader_closes_one_in == 0
                            {
                                if let Err(e) = secret.close() {
                                    tally.problem(format!("a reader closing secret {id}: {e}"));
                                }
                            }
                        }
                    })
                })
                .collect();
            for r in readers {
                r.join().expect("reader thread panicked");
            }
            done.store(true, Ordering::Relaxed);
            for c in churners {
                c.join().expect("churn thread panicked");
            }
        });
        for slot in slots {
            let (id, secret) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            secret
                .close()
                .map_err(|e| format!("closing secret {id}: {e}"))?;
        }
        Ok(tally)
    }
}

/// The id and secret of a slot chosen by `rng`.
pub fn pick<S: ?Sized>(slots: &[Slot<S>], rng: &mut u64) -> (u64, Arc<S>) {
    let guard = slots[xorshift(rng) as usize % SLOTS]
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    (guard.0, Arc::clone(&guard.1))
}

/// Reads a whole secret through a reader. A close in the middle may cut it short: then the closed error comes
/// back, never a short or wrong result passed off as complete.
fn read_all<S: Secret + ?Sized>(secret: &S) -> securememory::Result<Vec<u8>> {
    let mut reader = secret.reader()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 1000];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(match e.into_inner().map(|e| e.downcast::<Error>()) {
                    Some(Ok(e)) => *e,
                    _ => Error::action("a reader failed with a foreign error"),
                })
            }
        }
    }
}
