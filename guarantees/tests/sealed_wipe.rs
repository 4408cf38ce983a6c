//! A sealed secret leaves nothing behind. A child holds sealed secrets of several sizes, made every way (`new`,
//! `create_with`, `from_reader`), each with a random plaintext marker, and remembers (hex-encoded only) a piece of
//! each one's ciphertext and its tag. It scans ALL of its own memory through `/proc/self/mem` (no-access pages
//! too):
//! - at rest, and again after each secret was read once, the plaintext markers are nowhere (the scratch copy is
//!   wiped when the window closes) while each ciphertext piece is found: the scan works;
//! - after `close`, `drop` or `memguard::purge()` (handles still alive), neither plaintext nor ciphertext is
//!   found anywhere.
//!
//! The ciphertext lives in the ordinary heap, so the scan must not leave copies of the heap behind (a copy
//! made by an earlier scan would be found by a later one): it reads through one fixed buffer, made before the
//! first scan and never reallocated, skips that buffer's own bytes and wipes it after each scan.
#![cfg(target_os = "linux")]

mod common;

use common::ensure;
use guarantees::core_file::{self, decode_hex_into, MarkerSet};
use guarantees::proc_stats;
use guarantees::Scenario;
use securememory::sealed::{SealedSecret, SealedSecretFactory};
use securememory::{Error, Secret, SecretFactory};

const MARKERS_VAR: &str = "GUARANTEES_MARKERS";
/// Secret lengths, and where the 32-byte marker sits in each.
const SHAPES: [(usize, usize); 6] = [
    (32, 0),
    (33, 1),
    (100, 50),
    (4096, 4064),
    (5000, 4500),
    (20_000, 9000),
];

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// The secrets, the plaintext markers (as a set) and a set of their ciphertext pieces and tags.
struct Held {
    secrets: Vec<SealedSecret>,
    plaintext: MarkerSet,
    sealed: MarkerSet,
}

fn hold() -> Result<Held, Box<dyn std::error::Error>> {
    let markers: Vec<String> = std::env::var(MARKERS_VAR)?
        .split(',')
        .map(str::to_owned)
        .collect();
    ensure(markers.len() == SHAPES.len(), || {
        "wrong number of markers".into()
    })?;
    let factory = SealedSecretFactory::new();
    let mut secrets = Vec::new();
    let mut sealed_hex = Vec::new();
    for (i, (hex, &(len, offset))) in markers.iter().zip(&SHAPES).enumerate() {
        let secret = match i % 3 {
            0 => {
                let mut source = vec![0u8; len];
                decode_hex_into(hex, &mut source[offset..offset + 32]);
                factory.new(&mut source)?
            }
            1 => factory.create_with(len, &mut |bytes| {
                decode_hex_into(hex, &mut bytes[offset..offset + 32]);
                Ok(())
            })?,
            _ => {
                // A reader that decodes the marker straight into the secret's scratch copy.
                let mut reader = MarkerReader {
                    hex,
                    offset,
                    len,
                    at: 0,
                };
                factory.from_reader(&mut reader, len)?
            }
        };
        let (_, mut parts) = secret.sealed_parts()?;
        // The tag, and 32 bytes of ciphertext where the plaintext marker is (the whole ciphertext when short).
        sealed_hex.push(core_file::hex(&parts[..16]));
        let piece = &parts[16 + offset..16 + (offset + 32).min(len)];
        if piece.len() >= 8 {
            sealed_hex.push(core_file::hex(piece));
        }
        memcall::wipe_bytes(&mut parts);
        secrets.push(secret);
    }
    Ok(Held {
        secrets,
        plaintext: MarkerSet::from_hex(&markers),
        sealed: MarkerSet::from_hex(&sealed_hex),
    })
}

/// Reads `len` bytes: zeros, with the marker decoded from hex at `offset`.
struct MarkerReader<'a> {
    hex: &'a str,
    offset: usize,
    len: usize,
    at: usize,
}

impl std::io::Read for MarkerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.len - self.at);
        for (k, b) in buf[..n].iter_mut().enumerate() {
            let pos = self.at + k;
            *b = if (self.offset..self.offset + 32).contains(&pos) {
                let i = (pos - self.offset) * 2;
                u8::from_str_radix(&self.hex[i..i + 2], 16).unwrap_or(0)
            } else {
                0
            };
        }
        self.at += n;
        Ok(n)
    }
}

/// Bytes read from `/proc/self/mem` at a time.
const SCAN_BUFFER: usize = 1 << 20;

/// Scans every mapping of this process (no-access ones too, through `/proc/self/mem`) for `set`, reading only
/// resident or swapped pages (per `/proc/self/pagemap`), through `buf`, whose own bytes are skipped. Returns
/// the markers found and where. `buf` is wiped afterwards.
fn scan_with(set: &MarkerSet, buf: &mut [u8]) -> Vec<(usize, proc_stats::Mapping)> {
    let mem = std::fs::File::open("/proc/self/mem").expect("open /proc/self/mem");
    let pagemap = std::fs::File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
    let page = memcall::page_size();
    let own = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
    // A marker may straddle two reads: each read repeats the last 31 bytes of the one before.
    let step = buf.len() - 31;
    let mut hits = Vec::new();
    for m in proc_stats::mappings() {
        if proc_stats::unreadable(&m) {
            continue;
        }
        let mut found = vec![false; set.len()];
        for (start, end) in proc_stats::backed_runs(&pagemap, &m, page) {
            for (from, to) in [(start, end.min(own.0)), (start.max(own.1), end)] {
                let mut at = from;
                while at < to {
                    let want = (to - at).min(buf.len());
                    let n = proc_stats::read_fully(&mem, &mut buf[..want], at);
                    set.scan(&buf[..n], &mut found);
                    if n < want || at + want >= to {
                        break;
                    }
                    at += step;
                }
            }
        }
        hits.extend((0..set.len()).filter(|&i| found[i]).map(|i| (i, m.clone())));
    }
    memcall::wipe_bytes(buf);
    hits
}

fn scan(set: &MarkerSet, buf: &mut [u8]) -> Vec<String> {
    scan_with(set, buf)
        .into_iter()
        .map(|(i, m)| {
            format!(
                "#{i} in {:#x}..{:#x} {} {}",
                m.start, m.end, m.perms, m.name
            )
        })
        .collect()
}

fn at_rest_only_ciphertext(held: &Held, buf: &mut [u8], when: &str) -> Outcome {
    let plain = scan(&held.plaintext, buf);
    ensure(plain.is_empty(), || {
        format!("{when}: plaintext in process memory: {plain:#?}")
    })?;
    let mut found: Vec<usize> = scan_with(&held.sealed, buf)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    found.sort_unstable();
    found.dedup();
    ensure(found.len() == held.sealed.len(), || {
        format!(
            "{when}: only {} of {} ciphertext pieces found: the scan proves nothing",
            found.len(),
            held.sealed.len()
        )
    })?;
    Ok(())
}

fn no_trace(held: &Held, buf: &mut [u8], after: &str) -> Outcome {
    let plain = scan(&held.plaintext, buf);
    let sealed = scan(&held.sealed, buf);
    ensure(plain.is_empty() && sealed.is_empty(), || {
        format!("after {after}: plaintext {plain:#?}, ciphertext {sealed:#?}")
    })?;
    Ok(())
}

fn release_by(how: &str) -> Outcome {
    let mut buf = vec![0u8; SCAN_BUFFER];
    let buf = &mut buf[..];
    let held = hold()?;
    at_rest_only_ciphertext(&held, buf, "at rest")?;
    for s in &held.secrets {
        s.with_bytes(|b| Ok(b.len()))?;
    }
    at_rest_only_ciphertext(&held, buf, "after every secret was read once")?;
    let Held {
        secrets,
        plaintext,
        sealed,
    } = held;
    let after = Held {
        secrets: Vec::new(),
        plaintext,
        sealed,
    };
    match how {
        "close" => {
            for s in &secrets {
                s.close()?;
            }
            no_trace(&after, buf, "close, the handles still alive")?;
        }
        "drop" => drop(secrets),
        "purge" => {
            memguard::purge();
            for s in &secrets {
                ensure(
                    matches!(s.with_bytes(|_| Ok(())), Err(Error::Closed)),
                    || "a sealed secret is still readable after purge".into(),
                )?;
            }
            no_trace(&after, buf, "purge, the handles still alive")?;
            drop(secrets);
        }
        other => return Err(format!("unknown release {other}").into()),
    }
    no_trace(&after, buf, how)
}

fn after_close() -> Outcome {
    release_by("close")
}

fn after_drop() -> Outcome {
    release_by("drop")
}

fn after_purge() -> Outcome {
    release_by("purge")
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("after_close", after_close),
        ("after_drop", after_drop),
        ("after_purge", after_purge),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn run(scenario: &str) {
    let markers: Vec<String> = SHAPES.iter().map(|_| core_file::random_hex(32)).collect();
    let outcome = guarantees::run_child(scenario)
        .env(MARKERS_VAR, markers.join(","))
        .run();
    outcome.assert_success();
}

#[test]
fn closing_sealed_secrets_leaves_neither_plaintext_nor_ciphertext() {
    run("after_close");
}

#[test]
fn dropping_sealed_secrets_leaves_neither_plaintext_nor_ciphertext() {
    run("after_drop");
}

#[test]
fn purge_leaves_neither_plaintext_nor_ciphertext_of_sealed_secrets() {
    run("after_purge");
}
