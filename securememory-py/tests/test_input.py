"""Getting secrets in without a copy in ordinary memory: from_file, from_fd, from_readable and from_env."""

from __future__ import annotations

import errno
import io
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import pytest

import securememory

from securememory import InvalidLengthError, SecretClosedError

KEY = bytes(range(1, 33))


def write(tmp_path: pathlib.Path, data: bytes) -> pathlib.Path:
    path = tmp_path / "key"
    path.write_bytes(data)
    return path


# ---- from_file -------------------------------------------------------------------------------------------------


def test_from_file_reads_the_whole_file(factory, tmp_path) -> None:
    path = write(tmp_path, KEY)
    for where in (path, str(path)):
        with factory.from_file(where) as secret:
            assert secret.with_bytes(bytes) == KEY


def test_from_file_larger_than_a_page(factory, tmp_path) -> None:
    data = bytes(i % 251 for i in range(3 * 4096 + 17))
    with factory.from_file(write(tmp_path, data)) as secret:
        assert len(secret) == len(data)
        assert secret.with_bytes(bytes) == data


def test_from_file_enforces_max_len(factory, tmp_path) -> None:
    path = write(tmp_path, KEY)
    with factory.from_file(path, max_len=32) as secret:
        assert len(secret) == 32
    with pytest.raises(InvalidLengthError, match="longer than the limit of 31 bytes"):
        factory.from_file(path, max_len=31)
    with pytest.raises(InvalidLengthError):
        factory.from_file(path, max_len=-1)


def test_from_file_refuses_an_empty_file(factory, tmp_path) -> None:
    with pytest.raises(InvalidLengthError):
        factory.from_file(write(tmp_path, b""))


def test_from_file_raises_the_os_error_with_the_file_name(factory, tmp_path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as raised:
        factory.from_file(missing)
    assert raised.value.errno == errno.ENOENT
    assert raised.value.filename == str(missing)
    with pytest.raises(IsADirectoryError):
        factory.from_file(tmp_path)


# ---- from_fd ---------------------------------------------------------------------------------------------------


def test_from_fd_reads_a_pipe_to_its_end_and_leaves_the_fd_open(factory) -> None:
    read_end, write_end = os.pipe()
    data = bytes(i % 256 for i in range(70_000))  # more than a pipe buffer: the writer needs the reader

    def writer() -> None:
        with open(write_end, "wb", buffering=0) as pipe:
            pipe.write(data)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with factory.from_fd(read_end) as secret:
            assert secret.with_bytes(bytes) == data
        os.fstat(read_end)  # still open
    finally:
        thread.join()
        os.close(read_end)


def test_from_fd_continues_from_the_file_offset(factory, tmp_path) -> None:
    fd = os.open(write(tmp_path, b"header:" + KEY), os.O_RDONLY)
    try:
        os.read(fd, 7)
        with factory.from_fd(fd) as secret:
            assert secret.with_bytes(bytes) == KEY
    finally:
        os.close(fd)


def test_from_fd_errors(factory, tmp_path) -> None:
    fd = os.open(write(tmp_path, KEY), os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError) as raised:
        factory.from_fd(fd)
    assert raised.value.errno == errno.EBADF
    fd = os.open(write(tmp_path, KEY), os.O_RDONLY)
    try:
        with pytest.raises(InvalidLengthError, match="limit of 8 bytes"):
            factory.from_fd(fd, max_len=8)
    finally:
        os.close(fd)


# ---- from_readable ---------------------------------------------------------------------------------------------


def test_from_readable_with_an_unbuffered_file(factory, tmp_path) -> None:
    with open(write(tmp_path, KEY + b"rest"), "rb", buffering=0) as file:
        with factory.from_readable(file, 32) as secret:
            assert secret.with_bytes(bytes) == KEY
        assert file.read() == b"rest"


class Trickle(io.RawIOBase):
    """Gives one byte per readinto call."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data
        self.calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        self.calls += 1
        if not self.data:
            return 0
        buffer[0] = self.data[0]
        self.data = self.data[1:]
        return 1


def test_from_readable_loops_over_short_reads(factory) -> None:
    stream = Trickle(KEY)
    with factory.from_readable(stream, 32) as secret:
        assert secret.with_bytes(bytes) == KEY
    assert stream.calls == 32


def test_from_readable_refuses_a_short_stream(factory) -> None:
    with pytest.raises(EOFError, match="after 5 of 32 bytes"):
        factory.from_readable(io.BytesIO(KEY[:5]), 32)


def test_from_readable_passes_on_what_readinto_raises(factory) -> None:
    class Broken:
        def readinto(self, buffer: memoryview) -> int:
            raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError, match="gone"):
        factory.from_readable(Broken(), 32)


def test_from_readable_rejects_bad_streams_and_sizes(factory) -> None:
    class NonBlocking:
        def readinto(self, buffer: memoryview) -> None:
            return None

    class Liar:
        def readinto(self, buffer: memoryview) -> int:
            return len(buffer) + 1

    with pytest.raises(BlockingIOError):
        factory.from_readable(NonBlocking(), 32)
    with pytest.raises(ValueError, match="readinto returned 33"):
        factory.from_readable(Liar(), 32)
    with pytest.raises(TypeError, match="readinto"):
        factory.from_readable(b"not a stream", 32)  # type: ignore[arg-type]
    with pytest.raises(InvalidLengthError):
        factory.from_readable(io.BytesIO(KEY), 0)
    with pytest.raises(InvalidLengthError):
        factory.from_readable(io.BytesIO(KEY), -3)


def test_from_readable_detects_a_kept_buffer(factory) -> None:
    """A readinto that keeps its buffer would later write into sealed (or reused) pages: the call fails and the
    pages are quarantined; the kept view is released, so using it raises instead of faulting."""

    class Keeper:
        kept: list[memoryview] = []

        def readinto(self, buffer: memoryview) -> int:
            buffer[:] = b"k" * len(buffer)
            self.kept.append(buffer)
            return len(buffer)

    keeper = Keeper()
    with pytest.raises(BufferError, match="readinto must not keep the buffer") as raised:
        factory.from_readable(keeper, 32)
    assert "held by list" in str(raised.value)
    with pytest.raises(ValueError):
        keeper.kept[0][0] = 1


# ---- from_env --------------------------------------------------------------------------------------------------


def test_from_env_moves_the_variable_into_a_secret(factory) -> None:
    os.environ["SECUREMEMORY_TEST_ENV_KEY"] = KEY.decode("latin-1").replace("\x00", "z")
    expected = os.environb[b"SECUREMEMORY_TEST_ENV_KEY"]
    with factory.from_env("SECUREMEMORY_TEST_ENV_KEY") as secret:
        assert secret.with_bytes(bytes) == expected
    assert "SECUREMEMORY_TEST_ENV_KEY" not in os.environ
    assert os.getenv("SECUREMEMORY_TEST_ENV_KEY") is None
    # The C environment too: a child started now does not inherit it.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print('SECUREMEMORY_TEST_ENV_KEY' in os.environ)"],
        capture_output=True,
        text=True,
        env=None,
        timeout=60,
    )
    assert child.stdout == "False\n"
    with pytest.raises(KeyError):
        factory.from_env("SECUREMEMORY_TEST_ENV_KEY")


def test_from_env_errors_leave_the_environment_alone(factory) -> None:
    with pytest.raises(ValueError):
        factory.from_env("A=B")
    with pytest.raises(ValueError):
        factory.from_env("")
    os.environ["SECUREMEMORY_TEST_EMPTY"] = ""
    try:
        with pytest.raises(InvalidLengthError):
            factory.from_env("SECUREMEMORY_TEST_EMPTY")
        assert os.environ["SECUREMEMORY_TEST_EMPTY"] == ""
    finally:
        del os.environ["SECUREMEMORY_TEST_EMPTY"]


def test_from_env_wipes_the_inherited_block(factory) -> None:
    """In a child that inherited the variable, /proc/self/environ (the block the process started with) shows
    the name followed by zero bytes once the value is taken."""
    script = textwrap.dedent(
        """
        import os, sys, securememory
        before = open("/proc/self/environ", "rb").read()
        secret = securememory.{factory}().from_env("SECUREMEMORY_TEST_INHERITED")
        after = open("/proc/self/environ", "rb").read()
        value = bytes.fromhex(sys.argv[1])
        print(value in before, value in after, b"SECUREMEMORY_TEST_INHERITED=" + bytes(len(value)) in after,
              secret.with_bytes(bytes) == value)
        """
    ).format(factory=type(factory).__name__)
    value = os.urandom(16).hex().encode()
    child = subprocess.run(
        [sys.executable, "-c", script, value.hex()],
        capture_output=True,
        text=True,
        env={**os.environ, "SECUREMEMORY_TEST_INHERITED": value.decode()},
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "True False True True\n"


# ---- no copy, proven from outside ------------------------------------------------------------------------------

NO_COPY_CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy
    import securememory

    factory = getattr(securememory, sys.argv[1])()
    how, path = sys.argv[2], sys.argv[3]
    if how == "file":
        secret = factory.from_file(path)
    elif how == "fd":
        fd = os.open(path, os.O_RDONLY)
        secret = factory.from_fd(fd)
        os.close(fd)
    elif how == "buffered":
        kept_open = open(path, "rb")  # a BufferedReader: its buffer keeps a copy of the file
        secret = factory.from_readable(kept_open, 32)
    else:
        with open(path, "rb", buffering=0) as file:
            secret = factory.from_readable(file, 32)
    address = secret.with_bytes(lambda view: numpy.frombuffer(view, dtype=numpy.uint8).ctypes.data)
    print(address, len(secret), flush=True)
    sys.stdin.readline()  # the parent scans this process's memory meanwhile
    secret.close()
    if how == "buffered":
        kept_open.close()
    """
)


def scan_process(pid: int, needle: bytes) -> list[int]:
    """Every address in process `pid`'s mappings (no-access ones included) where `needle` occurs."""
    hits: list[int] = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            name = fields[5] if len(fields) > 5 else ""
            if name in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                continue
            start, end = (int(part, 16) for part in fields[0].split("-"))
            chunk = 1 << 20
            # Chunks overlap by len(needle) - 1 bytes so a match across a boundary is seen.
            for at in range(start, end, chunk):
                length = min(chunk + len(needle) - 1, end - at)
                try:
                    data = os.pread(mem.fileno(), length, at)
                except OSError:
                    continue
                found = data.find(needle)
                while found != -1:
                    if at + found not in hits:
                        hits.append(at + found)
                    found = data.find(needle, found + 1)
    return hits


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["file", "fd", "readable", "buffered"])
def test_a_key_read_in_leaves_no_copy_in_the_process(factory, tmp_path, how: str) -> None:
    """A child loads a random 32-byte key; the parent reads all of the child's memory and finds the key once:
    at the secret's address, in its (no-access) pages. No copy in the heap, on a stack or in a reader's buffer.
    The "buffered" case is the control: reading through a BufferedReader does leave a copy, and the scan finds it."""
    pytest.importorskip("numpy")
    key = os.urandom(32)
    path = write(tmp_path, key)
    with subprocess.Popen(
        [sys.executable, "-c", NO_COPY_CHILD, type(factory).__name__, how, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None and child.stderr is not None
        try:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            address, length = (int(part) for part in line.split())
            assert length == 32
            hits = scan_process(child.pid, key)
            if isinstance(factory, securememory.SealedSecretFactory):
                # At rest a sealed secret is ciphertext: the key is nowhere in the clear, and the buffered
                # control (the BufferedReader's own copy) shows the scan would find it.
                if how == "buffered":
                    assert hits, "the control copy was not found: the scan proves nothing"
                else:
                    assert hits == [], f"copies of the key: {[hex(h) for h in hits]}"
                child.stdin.write("done\n")
                child.stdin.flush()
                assert child.wait(timeout=60) == 0, child.stderr.read()
                return
            assert hits, "the key was not found at all: the scan proves nothing"
            if how == "buffered":
                # The control: a copy that does exist (the BufferedReader's buffer) is found.
                assert address in hits and len(hits) >= 2, [hex(h) for h in hits]
            else:
                assert hits == [address], f"copies of the key outside the secret: {[hex(h) for h in hits]}"
            child.stdin.write("done\n")
            child.stdin.flush()
            assert child.wait(timeout=60) == 0, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()


def test_secret_from_file_closes(factory, tmp_path) -> None:
    secret = factory.from_file(write(tmp_path, KEY))
    secret.close()
    with pytest.raises(SecretClosedError):
        secret.with_bytes(bytes)
