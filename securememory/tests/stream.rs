//! `SecretStream`: payloads larger than a chunk go in and come back out byte for byte, in every split.

use std::io::{Read, Write};

use securememory::stream::{SecretStream, CHUNK_SIZE};
use securememory::{Error, Secret, SecretExtensions};

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn round_trip_across_chunk_boundaries() {
    for len in [
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE + 17,
    ] {
        let data = payload(len);
        let mut stream = SecretStream::new();
        for part in data.chunks(10_000) {
            stream.write_all(part).unwrap();
        }
        assert_eq!(stream.len(), len);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        assert_eq!(out, data, "len {len}");
        assert!(stream.is_empty());
    }
}

#[test]
fn interleaved_writes_and_reads_are_fifo() {
    let data = payload(5 * CHUNK_SIZE / 2);
    let mut stream = SecretStream::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 7919];
    for part in data.chunks(33_333) {
        stream.write_all(part).unwrap();
        let n = stream.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    stream.read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
}

#[test]
fn write_from_wipes_the_source() {
    let mut source = payload(1000);
    let expected = source.clone();
    let mut stream = SecretStream::new();
    stream.write_from(&mut source).unwrap();
    assert!(source.iter().all(|&b| b == 0));
    let secret = stream.into_secret().unwrap();
    assert_eq!(
        secret.with_bytes_func(|b| Ok(b.to_vec())).unwrap(),
        expected
    );
}

#[test]
fn chunks_come_out_as_secrets() {
    let data = payload(CHUNK_SIZE + 100);
    let mut stream = SecretStream::new();
    stream.write_all(&data).unwrap();
    let mut head = [0u8; 10];
    stream.read_exact(&mut head).unwrap();
    let first = stream.next_chunk().unwrap().unwrap();
    assert_eq!(first.len(), CHUNK_SIZE - 10);
    assert_eq!(
        first.with_bytes_func(|b| Ok(b.to_vec())).unwrap(),
        &data[10..CHUNK_SIZE]
    );
    let second = stream.next_chunk().unwrap().unwrap();
    assert_eq!(
        second.with_bytes_func(|b| Ok(b.to_vec())).unwrap(),
        &data[CHUNK_SIZE..]
    );
    assert!(stream.next_chunk().unwrap().is_none());
    assert!(stream.is_empty());
    assert!(matches!(
        stream.into_secret(),
        Err(Error::InvalidLength { len: 0 })
    ));
}

#[test]
fn flushed_chunks_are_protected_secrets() {
    let mut stream = SecretStream::new();
    stream.write_all(b"tail").unwrap();
    stream.flush().unwrap();
    let chunk = stream.next_chunk().unwrap().unwrap();
    let report = chunk.protections();
    assert!(report.locked);
    // Windows has no per-region core-dump advice (crash-report exclusion is the region's own measure there).
    if cfg!(windows) {
        assert_eq!(report.no_dump, memcall::Outcome::Unsupported, "{report}");
    } else {
        assert!(report.no_dump.is_applied(), "{report}");
    }
    assert_eq!(chunk.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), b"tail");
}
