"""Errors: callback exceptions pass through unchanged; Rust errors arrive as typed exceptions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import securememory
from securememory import (
    CloseInsideAccessError,
    InvalidLengthError,
    MemoryLockError,
    SecretClosedError,
    SecureMemoryError,
)

KEY = b"correct horse battery staple!!!!"


class CallbackFailure(Exception):
    pass


def test_callback_exception_propagates_unchanged_and_secret_stays_usable(factory) -> None:
    failure = CallbackFailure("from inside the window")

    def callback(view: memoryview) -> None:
        assert view[0] == KEY[0]
        raise failure

    with factory.new(bytearray(KEY)) as secret:
        for _ in range(3):
            with pytest.raises(CallbackFailure) as raised:
                secret.with_bytes(callback)
            assert raised.value is failure
            assert raised.value.__cause__ is None
        assert secret.with_bytes(bytes) == KEY


def test_base_exceptions_from_the_callback_propagate_too(factory) -> None:
    def callback(view: memoryview) -> None:
        raise KeyboardInterrupt

    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(KeyboardInterrupt):
            secret.with_bytes(callback)
        assert secret.with_bytes(bytes) == KEY


def test_closed_secret_raises_secret_closed_error(factory) -> None:
    secret = factory.new(bytearray(KEY))
    assert not secret.closed
    secret.close()
    assert secret.closed
    secret.close()  # idempotent
    assert len(secret) == len(KEY)
    with pytest.raises(SecretClosedError, match="destroyed") as raised:
        secret.with_bytes(bytes)
    assert isinstance(raised.value, SecureMemoryError)
    with pytest.raises(SecretClosedError):
        secret.reader()


def test_callback_is_not_run_on_a_closed_secret(factory) -> None:
    calls: list[memoryview] = []
    secret = factory.new(bytearray(KEY))
    secret.close()
    with pytest.raises(SecretClosedError):
        secret.with_bytes(calls.append)
    assert calls == []


def test_context_manager_closes_even_when_the_body_raises(factory) -> None:
    with pytest.raises(CallbackFailure):
        with factory.new(bytearray(KEY)) as secret:
            raise CallbackFailure
    assert secret.closed


def test_close_inside_own_callback_is_refused(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(CloseInsideAccessError):
            secret.with_bytes(lambda view: secret.close())
        assert not secret.closed
        assert secret.with_bytes(bytes) == KEY


def test_non_callable_raises_type_error_and_secret_stays_usable(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(TypeError):
            secret.with_bytes(42)  # type: ignore[arg-type]
        assert secret.with_bytes(bytes) == KEY


def test_exception_hierarchy() -> None:
    for name in securememory.exceptions.__all__:
        assert issubclass(getattr(securememory, name), SecureMemoryError)
    assert issubclass(InvalidLengthError, ValueError)
    assert issubclass(CloseInsideAccessError, RuntimeError)
    with pytest.raises(TypeError):
        securememory.Secret()  # type: ignore[call-arg]


LOCK_LIMIT_CHILD = textwrap.dedent(
    """
    import resource, securememory
    limit = 64 * 1024
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
    factory = securememory.{factory}()
    secrets = []
    try:
        for _ in range(1000):
            secrets.append(factory.create_random(4096))
    except securememory.MemoryLockError as error:
        print(type(error).__name__, len(secrets), error, sep="|")
    source = bytearray(b"k" * 4096)
    try:
        factory.new(source)
    except securememory.MemoryLockError:
        print("source kept" if source == b"k" * 4096 else "source changed")
    unlocked = securememory.{factory}(best_effort_locking=True).create_random(4096)
    print("best effort", unlocked.protections()["locked"], unlocked.with_bytes(len))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_MEMLOCK child test is Linux-specific")
@pytest.mark.parametrize("factory_name", ["ProtectedMemorySecretFactory", "MemguardSecretFactory"])
def test_memlock_limit_raises_memory_lock_error_naming_the_limit(factory_name: str) -> None:
    script = LOCK_LIMIT_CHILD.format(factory=factory_name)
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        # Root ignores RLIMIT_MEMLOCK while it holds CAP_IPC_LOCK; run the child without it.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing: cannot drop CAP_IPC_LOCK")
        command = [setpriv, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", *command]
    child = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    first, second, third = child.stdout.strip().splitlines()
    name, created, message = first.split("|", 2)
    assert second == "source kept"  # a failed new() leaves the caller's buffer as it was, to retry
    assert name == MemoryLockError.__name__
    assert int(created) < 1000
    assert "64 KiB" in message  # the limit in force
    assert "ulimit -l" in message and "CAP_IPC_LOCK" in message  # and how to raise it
    assert third == "best effort False 4096"  # the opt-in mode still works, unlocked and saying so


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_secret_used_in_a_forked_child_raises_forked_process_error(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:
        pid = os.fork()
        if pid == 0:  # child: report by exit code only, never return into pytest
            code = 3
            try:
                secret.with_bytes(bytes)
            except securememory.ForkedProcessError:
                code = 0
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status), f"child ended by signal {os.WTERMSIG(status)}"
        assert os.WEXITSTATUS(status) == 0
        assert secret.with_bytes(bytes) == KEY  # the parent is unaffected
