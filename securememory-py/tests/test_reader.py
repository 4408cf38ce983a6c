"""secret.reader() is a binary, read-only file object."""

from __future__ import annotations

import io

import pytest

from securememory import SecretClosedError, SecretReader

PAYLOAD = bytes(i % 256 for i in range(5000))


def test_read_all_and_eof(factory) -> None:
    with factory.new(bytearray(PAYLOAD)) as secret:
        reader = secret.reader()
        assert isinstance(reader, io.RawIOBase)
        assert isinstance(reader, SecretReader)
        assert reader.readable() and not reader.writable() and not reader.seekable()
        assert reader.read() == PAYLOAD
        assert reader.read(10) == b""
        assert reader.secret is secret


def test_read_in_chunks_and_readinto(factory) -> None:
    with factory.new(bytearray(PAYLOAD)) as secret:
        reader = secret.reader()
        assert reader.read(7) == PAYLOAD[:7]
        chunk = bytearray(100)
        assert reader.readinto(chunk) == 100
        assert chunk == PAYLOAD[7:107]
        target = bytearray(10) + bytearray(50)
        assert reader.readinto(memoryview(target)[10:]) == 50
        assert target[10:] == PAYLOAD[107:157]
        assert reader.readall() == PAYLOAD[157:]
        assert reader.readinto(bytearray(5)) == 0


def test_each_reader_has_its_own_position(factory) -> None:
    with factory.new(bytearray(PAYLOAD)) as secret:
        first, second = secret.reader(), secret.reader()
        assert first.read(10) == PAYLOAD[:10]
        assert second.read(20) == PAYLOAD[:20]
        assert first.read(10) == PAYLOAD[10:20]


def test_buffered_reader_and_iteration_work_on_top(factory) -> None:
    lines = b"first line\nsecond line\nthird"
    with factory.new(bytearray(lines)) as secret:
        assert list(io.BufferedReader(secret.reader(), buffer_size=8)) == lines.splitlines(keepends=True)


def test_readinto_needs_a_writable_buffer(factory) -> None:
    with factory.new(bytearray(PAYLOAD)) as secret:
        with pytest.raises(TypeError):
            secret.reader().readinto(bytes(10))


def test_reading_after_secret_close_raises(factory) -> None:
    secret = factory.new(bytearray(PAYLOAD))
    reader = secret.reader()
    assert reader.read(1) == PAYLOAD[:1]
    secret.close()
    with pytest.raises(SecretClosedError):
        reader.read(10)


def test_closing_the_reader_leaves_the_secret_open(factory) -> None:
    with factory.new(bytearray(PAYLOAD)) as secret:
        with secret.reader() as reader:
            assert reader.read(3) == PAYLOAD[:3]
        assert reader.closed
        with pytest.raises(ValueError):
            reader.read(1)
        assert not secret.closed
        assert "closed" in repr(reader)
