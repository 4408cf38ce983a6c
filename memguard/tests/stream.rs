//! Stream: Go's observed example, and random write/read sequences against a plain reference.

use std::collections::VecDeque;
use std::io::{Read, Write};

use memguard::{stream_chunk_size, Error, Stream};
use proptest::prelude::*;

#[test]
fn go_observed_example() {
    assert_eq!(stream_chunk_size(), 16384);
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = Stream::new();
    assert_eq!(s.write(&data).unwrap(), 20_000);
    assert_eq!(s.size(), 20_000);

    let mut small = [0u8; 10];
    assert_eq!(s.read(&mut small).unwrap(), 10);
    assert_eq!(&small, &data[..10]);
    assert_eq!(s.size(), 19_990);

    let mut big = vec![0u8; 100_000];
    assert_eq!(
        s.read(&mut big).unwrap(),
        16_374,
        "the rest of the first chunk"
    );
    assert_eq!(&big[..16_374], &data[10..16_384]);

    let flushed = s.flush_buffer().unwrap();
    assert_eq!(flushed.size(), 3_616);
    assert!(flushed.equal_to(&data[16_384..]));
    assert!(!flushed.is_mutable());

    assert_eq!(s.read(&mut small).unwrap(), 0, "EOF");
    assert!(s.is_empty());
}

#[test]
fn write_moving_wipes_and_chunks_come_out_whole() {
    let mut data = vec![7u8; 40_000];
    let mut s = Stream::new();
    assert_eq!(s.write_moving(&mut data).unwrap(), 40_000);
    assert!(
        data.iter().all(|&b| b == 0),
        "caller's data wiped, as Go's Write does"
    );
    let mut sizes = Vec::new();
    while let Some(chunk) = s.next().unwrap() {
        assert!(!chunk.is_mutable());
        sizes.push(chunk.size());
    }
    assert_eq!(sizes, vec![16_384, 16_384, 7_232]);
    assert!(s.next().unwrap().is_none());
    assert!(matches!(
        s.flush_buffer(),
        Err(Error::InvalidLength { len: 0 })
    ));
}

#[test]
fn zero_length_read_changes_nothing_and_read_to_end_gets_everything() {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13) as u8).collect();
    let mut s = Stream::new();
    s.write_all(&data).unwrap();
    s.flush().unwrap();
    assert_eq!(s.read(&mut []).unwrap(), 0);
    assert_eq!(s.size(), 50_000);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
}

#[test]
fn a_failed_read_keeps_the_chunk_queued() {
    // A short read opens the chunk into a locked buffer; when that buffer cannot be locked, the read fails
    // with nothing lost. (Reads after a purge are in purge.rs, since a purge reaches the whole binary.)
    let mut s = Stream::new();
    s.write_all(b"abc").unwrap();
    let mut out = [0u8; 2];
    {
        let _f = memcall::fault::fail(memcall::Op::Lock).arm();
        assert!(s.read(&mut out).is_err());
    }
    assert_eq!(s.size(), 3, "the chunk is still queued");
    assert_eq!(s.read(&mut out).unwrap(), 2);
    assert_eq!(&out, b"ab");
    assert_eq!(s.read(&mut out).unwrap(), 1);
    assert_eq!(out[0], b'c');
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<u8>),
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40_000).prop_map(Op::Write),
        (0usize..40_000).prop_map(Op::Read),
    ]
}

/// The reference: Go's chunking on plain vectors.
#[derive(Default)]
struct Model {
    chunks: VecDeque<Vec<u8>>,
}

impl Model {
    fn write(&mut self, data: &[u8]) {
        self.chunks
            .extend(data.chunks(stream_chunk_size()).map(<[u8]>::to_vec));
    }
    fn read(&mut self, len: usize) -> Vec<u8> {
        if len == 0 {
            return Vec::new();
        }
        let Some(mut chunk) = self.chunks.pop_front() else {
            return Vec::new();
        };
        if len < chunk.len() {
            let rest = chunk.split_off(len);
            self.chunks.push_front(rest);
        }
        chunk
    }
    fn size(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn stream_matches_the_reference(ops in prop::collection::vec(op(), 1..12)) {
        let mut stream = Stream::new();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Write(data) => {
                    prop_assert_eq!(stream.write(&data).unwrap(), data.len());
                    model.write(&data);
                }
                Op::Read(len) => {
                    let mut buf = vec![0u8; len];
                    let n = stream.read(&mut buf).unwrap();
                    let expected = model.read(len);
                    prop_assert_eq!(&buf[..n], &expected[..]);
                }
            }
            prop_assert_eq!(stream.size(), model.size());
        }
        let rest: Vec<u8> = model.chunks.iter().flatten().copied().collect();
        if rest.is_empty() {
            prop_assert!(stream.flush_buffer().is_err());
        } else {
            prop_assert!(stream.flush_buffer().unwrap().equal_to(&rest));
        }
    }
}
