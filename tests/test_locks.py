"""locks.exclusive between real processes and between threads: refused or waited for, the holder named,
a lock that dies with a killed process, a waiter that ends up holding the file that is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from painterly.errors import OutputError
from painterly.locks import LockBusy, exclusive
from race_helpers import wait_until, waits_for_a_lock

needs_proc_locks = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")


def holder(path: Path, *, wait: bool = False) -> subprocess.Popen:
    """A process that takes the lock (waiting for it if `wait`), prints 'held', and holds it until its stdin
    closes."""
    code = textwrap.dedent(f"""
        import sys
        from painterly.locks import exclusive
        with exclusive({str(path)!r}, wait={wait!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def until_held(process: subprocess.Popen) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line == "held\n", (line, process.communicate())


def release(process: subprocess.Popen) -> None:
    out, err = process.communicate("", timeout=60)
    assert process.returncode == 0, err


def test_another_process_is_refused_at_once_and_told_who_holds_it(tmp_path):
    path = tmp_path / "model.lock"
    other = holder(path)
    try:
        until_held(other)
        assert path.read_text() == f"{other.pid}\n"
        with pytest.raises(LockBusy) as busy, exclusive(path, wait=False):
            pass
        assert busy.value.holder == other.pid and str(path) in str(busy.value)
    finally:
        release(other)
    assert not path.exists()  # removed by its holder at the end
    with exclusive(path, wait=False):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_a_lock_dies_with_a_killed_process(tmp_path):
    path = tmp_path / "model.lock"
    victim = holder(path)
    until_held(victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert path.read_text() == f"{victim.pid}\n"  # the file stays, its lock does not
    with exclusive(path, wait=False):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


@needs_proc_locks
def test_a_waiter_ends_up_holding_the_file_that_is_there_not_the_one_its_holder_removed(tmp_path):
    path = tmp_path / "model.lock"
    with exclusive(path):
        waiter = holder(path, wait=True)
        wait_until(lambda: waits_for_a_lock(waiter.pid), waiter, "the second process waits for the lock")
    try:
        until_held(waiter)  # it opened the file this process removed on leaving: it took the new one
        with pytest.raises(LockBusy) as busy, exclusive(path, wait=False):
            pass
        assert busy.value.holder == waiter.pid
    finally:
        release(waiter)


def test_threads_of_one_process_wait_for_each_other(tmp_path):
    path = tmp_path / "model.lock"
    order: list[str] = []
    refused: list[LockBusy] = []

    def refused_at_once() -> None:
        try:
            with exclusive(path, wait=False):
                order.append("not refused")
        except LockBusy as busy:
            refused.append(busy)

    def waits() -> None:
        with exclusive(path):
            order.append("second")

    with exclusive(path):
        first = threading.Thread(target=refused_at_once)
        first.start()
        first.join()
        second = threading.Thread(target=waits)
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waiting (a broken lock would have let it through by now)
        order.append("first")
    second.join()
    assert order == ["first", "second"]
    assert [busy.holder for busy in refused] == [os.getpid()]


def test_a_lock_file_that_cannot_be_made_is_the_output_line(tmp_path):
    path = tmp_path / "missing" / "model.lock"
    with pytest.raises(OutputError) as error, exclusive(path):
        pass
    assert str(error.value).startswith(f"{path}: cannot write (")
