"""The output boundary: every way a write fails is one OutputError line, and nothing is left behind.

The failures are real: a file limit (RLIMIT_FSIZE, so writes fail with EFBIG exactly as a full disk
fails with ENOSPC) in a subprocess, /dev/full, files and folders in the way, and a folder nothing can
be created in (chmod 0o500 for a normal user; root ignores that, so as root the folder is made
immutable with `chattr +i`, which stops root too).
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_limited, unwritable_folder
from painterly.atomic import STALE_AFTER_S, atomic_path, cannot_write, staged
from painterly.errors import OutputError

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes, rlimits and devices")


def one_line(error: pytest.ExceptionInfo, path: Path, reason: str) -> None:
    assert str(error.value) == f"{path}: cannot write ({reason})"


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- success ------------------------------------------------------------------------------------------


def test_writes_and_leaves_only_the_file(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".bin" and temporary != target
        temporary.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_creates_missing_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"x")
    assert target.read_bytes() == b"x"


@POSIX
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, mask):
    old = os.umask(mask)
    try:
        with atomic_path(tmp_path / "out.bin") as temporary:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors' writer did: 0600 always
            os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o666 & ~mask


@POSIX
def test_overwriting_keeps_the_existing_mode(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to see what is flushed")
def test_the_file_and_then_its_folder_are_flushed(tmp_path, monkeypatch):
    """A spy on the real os.fsync (it still runs): the data, then the folder entry, reach the disk."""
    flushed: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_path(tmp_path / "out.bin") as temporary:
        temporary.write_bytes(b"x")
    assert len(flushed) == 2
    assert Path(flushed[0]).name.startswith(".out.bin.") and flushed[1] == str(tmp_path)


# --- failures -----------------------------------------------------------------------------------------


def test_an_exception_in_the_block_keeps_the_old_file_and_removes_what_it_made(tmp_path):
    old = tmp_path / "old.bin"
    old.write_bytes(b"old")
    with pytest.raises(ValueError, match="boom"), atomic_path(old) as temporary:
        temporary.write_bytes(b"half")
        raise ValueError("boom")
    assert old.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["old.bin"]

    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "new" / "deeper" / "out.bin") as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["old.bin"]  # the two folders it created are gone


def test_an_oserror_in_the_block_is_one_line(tmp_path):
    target = tmp_path / "made" / "out.bin"
    with pytest.raises(OutputError) as error, atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    one_line(error, target, "No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_real_enospc_in_the_block_is_one_line(tmp_path):
    """/dev/full fails every write with ENOSPC: the kernel's own full-disk error, through the boundary."""
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError) as error, atomic_path(target) as temporary:
        temporary.write_bytes(b"part")
        with open("/dev/full", "wb") as full:
            full.write(b"x" * 65536)
            full.flush()
    one_line(error, target, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_writers_own_errors_are_translated_when_named(tmp_path):
    class WriterError(Exception):
        pass

    target = tmp_path / "out.bin"
    with pytest.raises(OutputError) as error, atomic_path(target, write_errors=(WriterError,)) as temporary:
        temporary.write_bytes(b"half")
        raise WriterError("I/O error: disk full (os error 28)\nmore detail")
    one_line(error, target, "I/O error: disk full (os error 28)")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_in_place_of_the_file(tmp_path):
    target = tmp_path / "out.png"
    (target / "inside").mkdir(parents=True)
    ran = False
    with pytest.raises(OutputError) as error, atomic_path(target):
        ran = True
    one_line(error, target, "a folder is in the way")
    assert not ran  # refused before any work
    assert [p.name for p in target.iterdir()] == ["inside"] and [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize("below", ["out.png", "sub/deeper/out.png"])
def test_a_file_in_place_of_a_parent_folder(tmp_path, below):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    target = blocker / below
    with pytest.raises(OutputError) as error, atomic_path(target):
        pytest.fail("the block must not run")
    one_line(error, target, f"{blocker} is a file, not a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["results"] and blocker.read_text() == "a file, not a folder"


@POSIX
@pytest.mark.parametrize("below", ["out.png", "new/out.png"])
def test_a_folder_nothing_can_be_created_in(tmp_path, below):
    with unwritable_folder(tmp_path / "locked") as locked:
        target = locked / below
        with pytest.raises(OutputError) as error, atomic_path(target) as temporary:
            temporary.write_bytes(b"x")
        assert str(error.value).startswith(f"{target}: cannot write (")
        assert str(error.value).endswith(("(Permission denied)", "(Operation not permitted)"))
        assert list(locked.iterdir()) == []


@POSIX
def test_a_full_disk_removes_the_folders_it_created(tmp_path):
    """A real failing write (RLIMIT_FSIZE) three folders down: one line, and no empty folders left."""
    target = tmp_path / "a" / "b" / "c" / "out.bin"
    result = run_limited(f"""
        from painterly.atomic import atomic_path
        from painterly.errors import OutputError
        try:
            with atomic_path({str(target)!r}) as temporary:
                temporary.write_bytes(b"x" * 100_000)
        except OutputError as error:
            print(error)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target}: cannot write (File too large)\n"
    assert list(tmp_path.iterdir()) == []


@POSIX
def test_a_failed_mkdir_is_one_line_and_leaves_nothing(tmp_path):
    with unwritable_folder(tmp_path / "locked") as locked:
        target = locked / "a" / "b" / "out.png"
        with pytest.raises(OutputError) as error, atomic_path(target):
            pytest.fail("the block must not run")
        assert str(error.value).startswith(f"{target}: cannot write (") and "\n" not in str(error.value)
        assert list(locked.iterdir()) == []


def test_cannot_write_words_any_error_on_one_line(tmp_path):
    assert str(cannot_write(tmp_path / "x", OSError(30, "Read-only file system"))) == (
        f"{tmp_path / 'x'}: cannot write (Read-only file system)")
    message = str(cannot_write("x", RuntimeError("[enforce fail]  first\n  second")))
    assert message == "x: cannot write ([enforce fail] first)"
    assert str(cannot_write("x", RuntimeError())) == "x: cannot write (RuntimeError)"


# --- the writers that go through the boundary ----------------------------------------------------------


@POSIX
@pytest.mark.parametrize("writer", ["save_image", "save_animation"])
def test_images_on_a_full_disk_are_one_output_error_line(tmp_path, writer):
    target = tmp_path / "out" / ("still.png" if writer == "save_image" else "moving.gif")
    result = run_limited(f"""
        import numpy as np
        from painterly import images
        from painterly.errors import OutputError
        frame = np.random.default_rng(0).random((64, 64, 3)).astype("float32")
        try:
            if {writer!r} == "save_image":
                images.save_image(frame, {str(target)!r})
            else:
                images.save_animation([frame, frame[::-1]], [100, 100], {str(target)!r})
        except OutputError as error:
            print(error)
    """, limit=2048)
    assert result.stdout == f"{target}: cannot write (File too large)\n", result.stderr
    assert list(tmp_path.iterdir()) == []


# --- what a writer killed outright leaves -------------------------------------------------------------


@functools.cache
def _host() -> str:
    """The host part of the names this machine's writers give their temporaries, read off a real one."""
    folder = Path(tempfile.mkdtemp())
    try:
        with atomic_path(folder / "probe") as temporary:
            temporary.write_bytes(b"")
    finally:
        shutil.rmtree(folder)
    host, pid, _ = temporary.name.split(".")[2].split("-")  # .probe.HOST-PID-RANDOM.tmp
    assert pid == str(os.getpid()) and len(host) == 8
    return host


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _age(path: Path, seconds: float = STALE_AFTER_S + 60) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def _temporary_name(target: str, host: str, pid: int | str, token: str = "0123abcd") -> str:
    """What atomic_path names a temporary of `target`: the target's suffix comes last."""
    return f".{target}.{host}-{pid}-{token}.tmp{Path(target).suffix}"


@POSIX
def test_the_next_write_into_the_folder_removes_what_a_writer_killed_with_sigkill_left(tmp_path):
    target = tmp_path / "out.bin"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from painterly.atomic import atomic_path
        with atomic_path({str(target)!r}) as temporary:
            temporary.write_bytes(b"half a video")
            print(temporary, flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    left = Path(writer.stdout.readline().strip())
    writer.kill()
    writer.wait()
    writer.stdout.close()
    assert [path.name for path in tmp_path.iterdir()] == [left.name] and left.read_bytes() == b"half a video"
    with atomic_path(tmp_path / "other.bin") as temporary:  # soon after: the writer might be in a container
        temporary.write_bytes(b"x")
    assert left.exists()
    _age(left)  # ten minutes later, in a process that has not written there yet
    sweep = subprocess.run([sys.executable, "-c", f"""
from painterly.atomic import atomic_path
with atomic_path({str(target)!r}) as temporary:
    temporary.write_bytes(b"whole")
"""], capture_output=True, text=True, check=False)
    assert sweep.returncode == 0, sweep.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.bin", "out.bin"]
    assert target.read_bytes() == b"whole"


@POSIX
def test_a_leftover_whose_writer_may_be_alive_or_that_is_not_one_is_kept(tmp_path):
    host, dead = _host(), _dead_pid()
    stale = tmp_path / _temporary_name("a.png", host, dead)
    kept = {
        "young": _temporary_name("b.png", host, dead),  # a writer of another PID namespace may be at work
        "alive": _temporary_name("c.png", host, os.getppid()),
        "this process": _temporary_name("d.png", host, os.getpid()),
        "another host": _temporary_name("e.png", "0badf00d" if host != "0badf00d" else "0badf00e", dead),
        "the old naming": ".f.png.1a2b3c4d.tmp.png",
        "a user's": ".g.png.backup",
    }
    stale.write_bytes(b"left")
    _age(stale)
    for why, name in kept.items():
        (tmp_path / name).write_bytes(b"kept")
        if why != "young":
            _age(tmp_path / name)
    folder = tmp_path / _temporary_name("h.png", host, dead)  # a folder of that name: not a file we wrote
    folder.mkdir()
    _age(folder)
    with atomic_path(tmp_path / "new.png") as temporary:
        temporary.write_bytes(b"x")
    assert not stale.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*kept.values(), folder.name, "new.png"])


_MUTATIONS = {  # ways a name can differ from a dead writer's temporary, each of which must keep the file
    "no leading dot": lambda name: name[1:],
    "a short token": lambda name: name.replace("-0123abcd.", "-0123abc."),
    "an upper-case host": lambda name: name.replace(_host(), _host().upper(), 1) if _host().upper() != _host()
    else "X" + name,
    "'.temp'": lambda name: name.replace("-0123abcd.tmp", "-0123abcd.temp"),
    "another suffix after .tmp": lambda name: name + ".bak",
    "a letter in the pid": lambda name: name.replace(f"-{_one_dead_pid()}-", f"-{_one_dead_pid()}x-"),
    "a trailing space": lambda name: name + " ",
}
_one_dead_pid = functools.cache(_dead_pid)  # the property test's, made once for all its examples


@POSIX
@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(targets=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=12)
                        .filter(lambda target: not target.startswith(".")),  # else a dotless name is one too
                        min_size=1, max_size=6, unique=True),
       mutations=st.lists(st.sampled_from([None, *_MUTATIONS]), min_size=6, max_size=6))
def test_only_a_dead_writers_temporaries_are_ever_removed(tmp_path_factory, targets, mutations):
    """Whatever the target names (any characters a file name may hold), a write into the folder removes exactly
    the temporaries of dead writers on this host, and keeps every name that differs from one's."""
    folder = tmp_path_factory.mktemp("sweep")
    expected_left = {"new.bin"}
    for target, mutation in zip(targets, mutations):
        name = _temporary_name(target, _host(), _one_dead_pid())
        if mutation is not None:
            name = _MUTATIONS[mutation](name)
            expected_left.add(name)
        if name in (".", "..") or len(name.encode()) > 255:
            expected_left.discard(name)
            continue
        (folder / name).write_bytes(b"")
        _age(folder / name)
    with atomic_path(folder / "new.bin") as temporary:
        temporary.write_bytes(b"x")
    assert {path.name for path in folder.iterdir()} == expected_left


# --- staged: a file that goes with an output takes its place only once the output is written ----------


def test_staged_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "out.mask.png"
    path.write_bytes(b"the earlier run's")
    with pytest.raises(RuntimeError):
        with staged(path) as temporary:
            temporary.write_bytes(b"the new one")
            assert path.read_bytes() == b"the earlier run's"  # not in place while the block runs
            raise RuntimeError("the output could not be written")
    assert path.read_bytes() == b"the earlier run's" and sorted(tmp_path.iterdir()) == [path]
    with staged(path) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".out.mask.png.")
        assert temporary.suffix == ".png"  # writers pick the format from it
        temporary.write_bytes(b"the new one")
    assert path.read_bytes() == b"the new one" and sorted(tmp_path.iterdir()) == [path]
    with staged(path):
        pass  # nothing written there (a clip stopped before its first frame): left alone
    assert path.read_bytes() == b"the new one"


def test_staged_leaves_the_users_link_as_it_was_when_the_block_fails(tmp_path):
    (tmp_path / "mine.png").write_bytes(b"the user's own mask")
    path = tmp_path / "out.mask.png"
    path.symlink_to("mine.png")
    with pytest.raises(RuntimeError), staged(path) as temporary:
        temporary.write_bytes(b"the new one")
        raise RuntimeError
    assert os.readlink(path) == "mine.png" and path.read_bytes() == b"the user's own mask"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.png", "out.mask.png"]


def test_staged_onto_a_folder_is_one_output_error_and_leaves_nothing(tmp_path):
    (tmp_path / "out.mask.png").mkdir()
    with pytest.raises(OutputError, match="out.mask.png: cannot write"):
        with staged(tmp_path / "out.mask.png") as temporary:
            temporary.write_bytes(b"new")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mask.png"]
