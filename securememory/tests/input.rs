//! Secrets read straight from readers and files: exact lengths, lengths unknown in advance up to a cap, and
//! every failure a typed error that keeps nothing.

mod common;

use std::io::{self, Read};

use common::Flavour;
#[cfg(any(feature = "zeroize", feature = "secrecy"))]
use common::{Mg, Pm};
use securememory::{Error, Secret, SecretExtensions, SecretFactory};

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8 + 1).collect()
}

/// Hands out at most `step` bytes per call and is interrupted once, like a slow pipe.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    interrupted: bool,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.interrupted {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn trickle(data: &[u8], step: usize) -> Trickle {
    Trickle {
        data: data.to_vec(),
        pos: 0,
        step,
        interrupted: false,
    }
}

fn holds<S: Secret>(secret: &S, expected: &[u8]) -> bool {
    secret.with_bytes(|b| Ok(b == expected)).unwrap()
}

fn reads_exact_lengths<F: Flavour>() {
    let factory = F::factory();
    let data = payload(100);
    let secret = factory.from_reader(&mut &data[..], 64).unwrap();
    assert_eq!(secret.len(), 64);
    assert!(holds(&secret, &data[..64]));
    secret.close().unwrap();
    match factory.from_reader(&mut &data[..10], 32) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("a short input must fail with UnexpectedEof: {other:?}"),
    }
    assert!(matches!(
        factory.from_reader(&mut &data[..], 0),
        Err(Error::InvalidLength { len: 0 })
    ));
}

fn reads_to_the_end_under_a_cap<F: Flavour>() {
    let factory = F::factory();
    for len in [1, 4095, 4096, 4097, 10_000, 65_536] {
        let data = payload(len);
        let secret = factory
            .from_reader_to_end(&mut trickle(&data, 3000), 65_536)
            .unwrap();
        assert_eq!(secret.len(), len);
        assert!(holds(&secret, &data), "len {len}");
        secret.close().unwrap();
    }
    let data = payload(65_537);
    match factory.from_reader_to_end(&mut &data[..], 65_536) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::FileTooLarge),
        other => panic!("input over the cap must fail: {other:?}"),
    }
    assert!(matches!(
        factory.from_reader_to_end(&mut io::empty(), 10),
        Err(Error::InvalidLength { len: 0 })
    ));
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    match factory.from_reader_to_end(&mut Broken, 10) {
        Err(Error::Io(e)) => assert_eq!(e.to_string(), "disk on fire"),
        other => panic!("{other:?}"),
    }
}

fn reads_files<F: Flavour>() {
    let path = std::env::temp_dir().join(format!(
        "securememory-input-{}-{}",
        std::process::id(),
        std::any::type_name::<F>().len()
    ));
    let data = payload(32);
    std::fs::write(&path, &data).unwrap();
    let secret = F::factory().from_file(&path, 64).unwrap();
    assert!(holds(&secret, &data));
    assert!(matches!(
        F::factory().from_file(&path, 16),
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::FileTooLarge
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        F::factory().from_file(&path, 64),
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound
    ));
}

for_both_flavours!(
    reads_exact_lengths,
    reads_to_the_end_under_a_cap,
    reads_files
);

#[cfg(feature = "zeroize")]
#[test]
fn zeroizing_sources_are_taken_and_wiped() {
    let mut source = zeroize::Zeroizing::new(b"thisismy32bytesecretthatiwilluse".to_vec());
    let secret = Pm::factory().from_zeroizing(&mut source).unwrap();
    assert!(holds(&secret, common::KEY));
    assert!(source.iter().all(|&b| b == 0), "the source is wiped");
    let mut empty = zeroize::Zeroizing::new(Vec::<u8>::new());
    assert!(Mg::factory().from_zeroizing(&mut empty).is_err());
}

#[cfg(feature = "secrecy")]
#[test]
fn secret_boxes_are_taken_and_wiped() {
    use secrecy::ExposeSecret;
    let mut source: secrecy::SecretBox<[u8]> = common::KEY.to_vec().into();
    let secret = Mg::factory().from_secret_box(&mut source).unwrap();
    assert!(holds(&secret, common::KEY));
    assert!(
        source.expose_secret().iter().all(|&b| b == 0),
        "the box is wiped"
    );
}
