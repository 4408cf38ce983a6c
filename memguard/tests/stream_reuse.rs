//! Stream used as a pipe: the allocations of chunks read are sealed into again, which must never change
//! what comes out, let an old chunk's bytes through, or weaken the binding of chunks to their position.

use std::io::{Read, Write};

use memguard::{stream_chunk_size, Error, LockedBuffer, Stream};

/// `len` bytes that differ from one `round` to the next.
fn pattern(round: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(round))
        .collect()
}

/// Reads everything back with whole-chunk reads, short reads, `next` and `flush_buffer` in turn.
fn drain(s: &mut Stream, round: u8) -> Vec<u8> {
    let mut out = Vec::new();
    match round % 4 {
        0 => {
            let mut buf = vec![0u8; stream_chunk_size()];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
        1 => {
            // Short reads: each re-seals the rest of the front chunk into a recycled allocation.
            let mut buf = vec![0u8; 5000];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
        2 => {
            while let Some(chunk) = s.next().unwrap() {
                chunk.with_bytes(|b| out.extend_from_slice(b)).unwrap();
            }
        }
        _ => {
            if s.size() > 0 {
                s.flush_buffer()
                    .unwrap()
                    .with_bytes(|b| out.extend_from_slice(b))
                    .unwrap();
            }
        }
    }
    assert_eq!(s.size(), 0);
    out
}

#[test]
fn a_stream_used_as_a_pipe_returns_exactly_what_each_round_wrote() {
    let chunk = stream_chunk_size();
    let mut s = Stream::new();
    // Sizes that shrink and grow, so recycled allocations are both too large and too small.
    let sizes = [
        5 * chunk + 17,
        1,
        chunk,
        3 * chunk - 1,
        70 * chunk,
        chunk / 2,
        2 * chunk + 3,
        100,
    ];
    for (round, &len) in sizes.iter().enumerate() {
        let round = round as u8;
        let data = pattern(round, len);
        match round % 3 {
            0 => {
                let mut moving = data.clone();
                assert_eq!(s.write_moving(&mut moving).unwrap(), len);
                assert!(moving.iter().all(|&b| b == 0));
            }
            1 => s.write_all(&data).unwrap(),
            _ => {
                let buffer = LockedBuffer::from_bytes(&mut data.clone()).unwrap();
                assert_eq!(s.write_from(&buffer).unwrap(), len);
            }
        }
        assert_eq!(s.size(), len);
        let out = drain(&mut s, round);
        assert!(out == data, "round {round}: {len} bytes back exactly");
    }
}

#[test]
fn chunks_sealed_into_recycled_allocations_stay_bound_to_their_position() {
    let chunk = stream_chunk_size();
    let mut s = Stream::new();
    // Fill and drain once so the next chunks are sealed into recycled allocations.
    s.write_all(&vec![9u8; 4 * chunk]).unwrap();
    drain(&mut s, 0);
    for i in 0..4u8 {
        s.write_all(&vec![i + 1; chunk]).unwrap();
    }
    s.chunks_mut().swap(1, 2);
    let mut buf = vec![0u8; chunk];
    assert_eq!(s.read(&mut buf).unwrap(), chunk);
    assert!(buf.iter().all(|&b| b == 1));
    let err = s
        .read(&mut buf)
        .expect_err("a reordered chunk does not open");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(s.next(), Err(Error::DecryptionFailed)));
    // Swapped back (the first chunk is gone, so they are now at 0 and 1), the stream reads on as written.
    s.chunks_mut().swap(0, 1);
    for i in 2..=4u8 {
        assert_eq!(s.read(&mut buf).unwrap(), chunk);
        assert!(buf.iter().all(|&b| b == i), "chunk {i}");
    }
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}
