//! Go's `internal/secrets/reader_test.go` for both flavours, plus `io::Read` behaviour and chained readers.

mod common;

use std::io::Read;

use common::{secret_of, Flavour};
use securememory::{Error, Secret};

fn reads_in_go_order<F: Flavour>() {
    let s = secret_of::<F>(b"0123456789");
    let mut r = s.reader().unwrap();
    let expected: [(usize, &[u8], bool); 5] = [
        (4, b"0123", false),
        (4, b"4567", false),
        (1, b"8", false),
        (4, b"9", true),
        (4, b"", true),
    ];
    for (size, want, eof) in expected {
        let mut buf = vec![0u8; size];
        let (n, at_end) = r.read_with_eof(&mut buf).unwrap();
        assert!(n <= buf.len());
        assert_eq!(&buf[..n], want);
        assert_eq!(at_end, eof, "after reading {want:?}");
    }
}

fn io_read_reports_end_as_zero<F: Flavour>() {
    let s = secret_of::<F>(b"0123456789");
    let mut r = s.reader().unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(r.read(&mut buf).unwrap(), 4);
    assert_eq!(r.read(&mut []).unwrap(), 0, "a zero-length read mid-data");
    assert_eq!(r.position(), 4);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"456789");
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    assert_eq!(r.remaining(), 0);
}

fn read_after_close_is_closed_error<F: Flavour>() {
    let s = secret_of::<F>(b"0123456789");
    let mut r = s.reader().unwrap();
    s.close().unwrap();
    let mut buf = [0u8; 4];
    let err = r.read_with_eof(&mut buf).unwrap_err();
    assert!(matches!(err, Error::Closed));
    let err = r.read(&mut buf).unwrap_err();
    assert_eq!(err.to_string(), "secret has already been destroyed");
    assert!(matches!(s.reader(), Err(Error::Closed)));
}

fn read_after_close_at_end_is_closed_error<F: Flavour>() {
    let s = secret_of::<F>(b"ab");
    let mut r = s.reader().unwrap();
    assert_eq!(r.read_with_eof(&mut [0u8; 8]).unwrap(), (2, true));
    s.close().unwrap();
    assert!(matches!(r.read_with_eof(&mut [0u8; 8]), Err(Error::Closed)));
}

fn readers_have_their_own_positions<F: Flavour>() {
    let s = secret_of::<F>(b"0123456789");
    let mut a = s.reader().unwrap();
    let mut b = s.reader().unwrap();
    let mut buf = [0u8; 3];
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"012");
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"012");
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"345");
}

fn chained_readers<F: Flavour>() {
    let first = secret_of::<F>(b"first ");
    let second = secret_of::<F>(b"second ");
    let third = secret_of::<F>(b"third");
    let mut out = String::new();
    first
        .reader()
        .unwrap()
        .chain(second.reader().unwrap())
        .chain(third.reader().unwrap())
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "first second third");
}

fn reads_match_a_plain_slice_reader<F: Flavour>() {
    // Every data length and read size against std's reader over a plain slice.
    for len in 1..40usize {
        let data: Vec<u8> = (0..len as u8).collect();
        let s = secret_of::<F>(&data);
        for step in 1..12usize {
            let mut ours = s.reader().unwrap();
            let mut plain: &[u8] = &data;
            loop {
                let (mut a, mut b) = (vec![0u8; step], vec![0u8; step]);
                let n = ours.read(&mut a).unwrap();
                let m = plain.read(&mut b).unwrap();
                assert_eq!((n, &a[..n]), (m, &b[..m]), "len {len} step {step}");
                if n == 0 {
                    break;
                }
            }
        }
    }
}

fn failed_release_wipes_the_copy_and_keeps_the_position<F: Flavour>() {
    let s = secret_of::<F>(b"0123456789");
    let mut r = s.reader().unwrap();
    let mut buf = [0xAAu8; 4];
    {
        let _guard = memcall::fault::fail(memcall::Op::Protect).after(1).arm();
        let err = r.read_with_eof(&mut buf).unwrap_err();
        assert!(matches!(err, Error::Released { .. }), "{err:?}");
    }
    assert_eq!(buf, [0u8; 4], "copied bytes are wiped when the read fails");
    assert_eq!(r.position(), 0);
    assert_eq!(r.read_with_eof(&mut buf).unwrap(), (4, false));
    assert_eq!(&buf, b"0123");
}

for_both_flavours!(
    reads_in_go_order,
    io_read_reports_end_as_zero,
    read_after_close_is_closed_error,
    read_after_close_at_end_is_closed_error,
    readers_have_their_own_positions,
    chained_readers,
    reads_match_a_plain_slice_reader,
    failed_release_wipes_the_copy_and_keeps_the_position,
);
