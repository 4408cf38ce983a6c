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
        // Not a lock-limit errno: at the limit the private stack of the decryption goes on unlocked.
        let _f = memcall::fault::fail(memcall::Op::Lock)
            .errno(libc::EINVAL)
            .arm();
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

mod tamper {
    use std::io::{Read, Write};

    use memguard::{stream_chunk_size, Error, LockedBuffer, Stream};

    /// A stream of four chunks, each filled with its own byte.
    fn four_chunks() -> Stream {
        let mut s = Stream::new();
        for i in 0..4u8 {
            s.write_all(&vec![i + 1; stream_chunk_size()]).unwrap();
        }
        assert_eq!(s.chunks_mut().len(), 4);
        s
    }

    /// Every way of reading fails with the integrity error and returns nothing.
    fn assert_every_read_fails(mut s: Stream) {
        let mut buf = vec![0u8; 4 * stream_chunk_size()];
        let mut whole = vec![0u8; stream_chunk_size()];
        // Reads until the tampered chunk: the intact ones before it still come out.
        let mut failed = None;
        for _ in 0..5 {
            match s.read(&mut whole) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        let err = failed.expect("a read fails");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        assert!(matches!(s.next(), Err(Error::DecryptionFailed)));
        assert!(matches!(s.flush_buffer(), Err(Error::DecryptionFailed)));
        let mut short = [0u8; 10];
        assert!(s.read(&mut short).is_err());
        assert_eq!(short, [0u8; 10], "nothing returned");
        assert!(s.read(&mut buf).is_err());
    }

    #[test]
    fn a_chunk_of_another_stream_spliced_in_fails() {
        let mut a = four_chunks();
        let mut b = four_chunks();
        let foreign = b.chunks_mut()[1].clone();
        a.chunks_mut()[1] = foreign;
        assert_every_read_fails(a);
    }

    #[test]
    fn reordered_chunks_fail() {
        let mut s = four_chunks();
        s.chunks_mut().swap(1, 2);
        assert_every_read_fails(s);
        let mut s = four_chunks();
        s.chunks_mut().swap(0, 3);
        assert!(matches!(s.next(), Err(Error::DecryptionFailed)));
    }

    #[test]
    fn a_dropped_chunk_fails() {
        let mut s = four_chunks();
        s.chunks_mut().remove(2);
        assert!(matches!(s.next(), Err(Error::DecryptionFailed)));
        assert_every_read_fails(s);
    }

    #[test]
    fn a_truncated_stream_fails_and_a_chunk_added_at_the_end_too() {
        let mut s = four_chunks();
        s.chunks_mut().pop_back();
        assert_every_read_fails(s);
        // Cut after some chunks were read.
        let mut s = four_chunks();
        assert!(s
            .next()
            .unwrap()
            .unwrap()
            .equal_to(&vec![1u8; stream_chunk_size()]));
        s.chunks_mut().truncate(1);
        assert!(matches!(s.next(), Err(Error::DecryptionFailed)));
        // A copy of the last chunk appended.
        let mut s = four_chunks();
        let last = s.chunks_mut()[3].clone();
        s.chunks_mut().push_back(last);
        assert_every_read_fails(s);
    }

    #[test]
    fn an_untampered_stream_reads_back_across_partial_reads() {
        let mut s = four_chunks();
        let mut out = Vec::new();
        let mut small = [0u8; 1000];
        loop {
            let n = s.read(&mut small).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        let expected: Vec<u8> = (1..=4u8)
            .flat_map(|i| vec![i; stream_chunk_size()])
            .collect();
        assert_eq!(out, expected);
        assert!(s.next().unwrap().is_none());
    }

    #[test]
    fn write_from_copies_a_locked_buffer_and_leaves_it() {
        let len = 2 * stream_chunk_size() + 7;
        let mut src: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let expected = src.clone();
        let buf = LockedBuffer::from_bytes(&mut src).unwrap();
        let mut s = Stream::new();
        assert_eq!(s.write_from(&buf).unwrap(), len);
        assert_eq!(s.chunks_mut().len(), 3);
        assert!(buf.equal_to(&expected));
        assert!(s.flush_buffer().unwrap().equal_to(&expected));
    }
}
