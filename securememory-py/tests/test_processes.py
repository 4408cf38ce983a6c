"""Process life: interpreter exit with a daemon thread inside a callback, fork() around and inside secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

DAEMON_CHILD = textwrap.dedent(
    """
    import threading, time
    import securememory

    inside = threading.Barrier(3)

    def busy(view):
        inside.wait()
        while True:  # Python code that keeps asking for the GIL back, as the interpreter shuts down
            bytes(view)
            time.sleep(0)

    for factory in (securememory.ProtectedMemorySecretFactory(), securememory.MemguardSecretFactory()):
        secret = factory.new(bytearray(b"k" * 64))
        threading.Thread(target=secret.with_bytes, args=(busy,), daemon=True).start()
    inside.wait()
    print("exiting", flush=True)
    """
)


def test_daemon_thread_inside_a_callback_does_not_abort_interpreter_exit() -> None:
    """CPython < 3.14 ends such a thread with pthread_exit, a forced unwind that used to reach the binding's
    Rust frames and abort the process (SIGABRT); the thread now parks and the process exits cleanly."""
    for run in range(8):
        child = subprocess.run([sys.executable, "-c", DAEMON_CHILD], capture_output=True, text=True, timeout=120)
        assert child.returncode == 0, f"run {run}: exit {child.returncode}, stderr: {child.stderr[-2000:]}"
        assert child.stdout == "exiting\n"
        assert child.stderr == ""


POOL_CHILD = textwrap.dedent(
    """
    import multiprocessing, sys
    import securememory

    FACTORIES = [securememory.ProtectedMemorySecretFactory, securememory.MemguardSecretFactory]

    def work(index):
        made = []
        for factory in FACTORIES:
            for size in (1, 32, 4096, 3 * 4096 + 5):
                source = bytearray((index + size + i) % 256 for i in range(size))
                expected = bytes(source)
                secret = factory().new(source)
                assert source == bytearray(size)
                assert secret.with_bytes(bytes) == expected
                made.append(secret)
            random = factory().create_random(64)
            assert random.with_bytes(len) == 64
            random.close()
        for secret in made:
            secret.close()
        return index

    def run(index, results):
        try:
            results.put((index, work(index)))
        except BaseException as error:
            results.put((index, repr(error)))
            raise

    if __name__ == "__main__":
        # The parent has used and closed secrets of every size first, so its pools hold pages.
        for factory in FACTORIES:
            for size in (1, 32, 4096, 3 * 4096 + 5):
                secret = factory().new(bytearray(b"p" * size))
                secret.with_bytes(len)
                secret.close()
        kept = [factory().create_random(32) for factory in FACTORIES]
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        # Plain processes, not a Pool: a worker that dies by a signal must show up as such, not as a hang.
        workers = [context.Process(target=run, args=(index, results)) for index in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        print("exit codes", [worker.exitcode for worker in workers], flush=True)
        finished = sum(worker.exitcode == 0 for worker in workers)
        reported = sorted(results.get(timeout=5) for _ in range(finished))
        print("results", [value for _, value in reported], flush=True)
        assert all(secret.with_bytes(len) == 32 for secret in kept)
        """
)


@needs_fork
def test_forked_multiprocessing_workers_create_and_use_secrets(tmp_path) -> None:
    script = tmp_path / "pool_child.py"
    script.write_text(POOL_CHILD)
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert child.returncode == 0, f"exit {child.returncode}, stderr: {child.stderr[-3000:]}"
    assert child.stdout.splitlines() == ["exit codes [0, 0, 0, 0]", "results [0, 1, 2, 3]"], child.stderr[-3000:]


FORK_INSIDE_CHILD = textwrap.dedent(
    """
    import os, pickle, sys
    import securememory

    secret = securememory.{factory}().new(bytearray(b"k" * 64))

    def callback(view):
        derived = view[8:]
        pid = os.fork()
        if pid == 0:
            for name, use in (("view", lambda: bytes(view)), ("derived", lambda: derived[0])):
                try:
                    use()
                except ValueError:
                    print("child", name, "released", flush=True)
                else:
                    print("child", name, "READABLE", flush=True)
            return "child"
        _, status = os.waitpid(pid, 0)
        print("parent: child status", status, flush=True)
        return bytes(view[:2])

    try:
        result = secret.with_bytes(callback)
        print(os.getpid() == PARENT, "returned", result, flush=True)
    except securememory.ForkedProcessError:
        print(os.getpid() == PARENT, "ForkedProcessError", flush=True)
        os._exit(0)
    print("parent still reads", secret.with_bytes(bytes) == b"k" * 64, flush=True)
    """
)


@needs_fork
@pytest.mark.parametrize("factory_name", ["ProtectedMemorySecretFactory", "MemguardSecretFactory"])
def test_fork_inside_a_callback_releases_the_views_in_the_child(factory_name: str) -> None:
    """A memoryview cannot raise a custom exception: the child's views are released as it starts (so using them
    raises ValueError instead of faulting), and the child's with_bytes raises ForkedProcessError."""
    script = "PARENT = __import__('os').getpid()\n" + FORK_INSIDE_CHILD.format(factory=factory_name)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stderr == ""
    assert child.stdout.splitlines() == [
        "child view released",
        "child derived released",
        "False ForkedProcessError",
        "parent: child status 0",
        "True returned b'kk'",
        "parent still reads True",
    ]


QUIET_EXIT_CHILD = textwrap.dedent(
    """
    import gc, os, sys
    import securememory

    secrets = []
    for factory in (securememory.ProtectedMemorySecretFactory(), securememory.MemguardSecretFactory()):
        secrets.append(factory.new(bytearray(b"k" * 40)))
        secrets.append(factory.create_random(5 * 4096))
        closed = factory.create_random(16)
        closed.close()
        secrets.append(closed)
    reader = secrets[0].reader()
    pid = os.fork()
    if pid == 0:
        if sys.argv[1] == "collect":
            del secrets, reader
            gc.collect()
        sys.exit(0)  # a normal interpreter exit: whatever is left is collected at finalization
    _, status = os.waitpid(pid, 0)
    print("child status", status, flush=True)
    """
)


@needs_fork
@pytest.mark.parametrize("how", ["collect", "finalize"])
def test_forked_child_that_just_exits_says_nothing(how: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", QUIET_EXIT_CHILD, how], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "child status 0\n"
    assert child.stderr == ""

