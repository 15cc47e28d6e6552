"""The tests' forked `python -m painterly` processes (cli_processes.py) behave as real ones do."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

import painterly
from cli_processes import Popen, run, run_painterly


def python(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_the_cli_entry_point_runs_with_its_exit_codes():
    version = run_painterly("--version")
    assert (version.returncode, version.stdout.strip(), version.stderr) == (0, f"painterly {painterly.__version__}", "")
    usage = run_painterly("stylize")
    assert usage.returncode == 2 and "Missing argument" in usage.stderr and "Traceback" not in usage.stderr


def test_exit_code_and_the_two_streams_apart():
    done = python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert python("raise SystemExit('no')").returncode == 1


def test_an_uncaught_error_prints_the_interpreters_traceback():
    done = python("def f():\n    raise ValueError('boom')\nf()")
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["Traceback (most recent call last):", '  File "<string>", line 3, in <module>',
                                        '  File "<string>", line 2, in f', "ValueError: boom"]


def test_argv_env_and_cwd_are_the_requests_and_the_environment_is_replaced(tmp_path, monkeypatch):
    code = "import os, sys; print(sys.argv, os.getcwd(), sorted(k for k in os.environ if k.startswith('S1_')))"
    done = python(code, "a", "b", cwd=tmp_path, env={"S1_ONLY": "1", "PATH": os.environ["PATH"]})
    assert done.stdout.strip() == f"['-c', 'a', 'b'] {tmp_path} ['S1_ONLY']"
    (tmp_path / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "inner")
    monkeypatch.setenv("S1_INHERITED", "yes")
    inherited = python("import os, sys; print(repr(sys.path[0]), os.getcwd(), os.environ['S1_INHERITED'])")
    assert inherited.stdout.split() == ["''", str(tmp_path / "inner"), "yes"]  # the test's own cwd and environment


def test_stdin_reaches_the_child_and_a_bad_cwd_is_refused_as_popen_refuses_it(tmp_path):
    assert python("print(input()[::-1])", input="olleh\n").stdout == "hello\n"
    with pytest.raises(FileNotFoundError) as refused:
        python("pass", cwd=tmp_path / "missing")
    assert refused.value.errno == errno.ENOENT


def test_lines_are_read_live_and_sigterm_ends_the_child_as_it_ends_a_real_one():
    process = Popen([sys.executable, "-c", "import time\nprint('ready', flush=True)\ntime.sleep(120)"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout.readline() == "ready\n"
        assert process.poll() is None
        assert os.getsid(process.pid) == process.pid  # start_new_session made it a session leader
        process.terminate()
        assert process.wait(timeout=60) == -signal.SIGTERM
        assert process.communicate() == ("", "")
    finally:
        if process.poll() is None:
            process.kill()


def test_two_runs_share_no_state_and_each_seeds_its_generators_afresh():
    code = ("import painterly.cli as cli, random, numpy, torch\n"
            "print(hasattr(cli, 'S1_MARK'), torch.get_num_threads(), torch.rand(1).item(), numpy.random.rand(),"
            " random.random())\ncli.S1_MARK = 1")
    first, second = (python(code, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split() for _ in range(2))
    assert first[:2] == second[:2] == ["False", "1"]  # the first's change is not seen by the second
    assert all(a != b for a, b in zip(first[2:], second[2:]))  # no generator replays the other run's numbers


def test_a_file_size_limit_refuses_the_write_as_a_full_disk_would(tmp_path):
    done = run([sys.executable, "-c", "open('big', 'wb').write(bytes(10000))"], cwd=tmp_path, capture_output=True,
               text=True, timeout=120, file_size_limit=4096)
    assert done.returncode == 1 and "OSError: [Errno 27] File too large" in done.stderr


def test_unbuffered_streams_as_torchrun_asks_for_its_workers():
    code = "import sys; print(type(sys.stdout.buffer).__name__, sys.stdout.write_through, sys.stderr.write_through)"
    real = subprocess.run([sys.executable, "-u", "-c", code], capture_output=True, text=True, timeout=120)
    assert run([sys.executable, "-u", "-c", code], capture_output=True, text=True, timeout=120).stdout == real.stdout
    assert real.stdout.split() == ["FileIO", "True", "True"]
