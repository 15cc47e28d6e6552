"""`python -m painterly ...` processes for the tests without paying for `import torch` in each.

Every interpreter a test starts spends ~3.5 CPU-s importing torch before it does anything; the suite starts
hundreds. Instead, each pytest(-xdist) worker starts one *zygote* on first use: a Python process that
imports torch and painterly's CLI modules once, runs no torch op, and forks a child per request. The child
gets the test's own stdin/stdout/stderr file descriptors (sent over a Unix socket), argv, environment
(replacing the zygote's wholly), cwd and session, then runs `python -m MODULE`, `-c CODE` or `SCRIPT` as a fresh
interpreter would: same `sys.argv` and `sys.path[0]`, a traceback through `sys.excepthook` and exit 1 for an
uncaught exception, threads joined, atexit run and std streams flushed at the end. Its exit status comes
back like a real child's (negative for a signal).

`Popen` is `subprocess.Popen` with the exec replaced by that fork: pipes, text mode, `communicate`, `wait`,
`poll`, `send_signal`, `terminate`, `kill` are Popen's own. `run` is `subprocess.run` on it. Commands are
written as for the real thing (`[sys.executable, "-m", "painterly", ...]`); `run_painterly(*args)` is the
short form. `TORCHRUN` is `python -m torch.distributed.run` whose worker processes are forked from the zygote
too: torchrun's own agent, rendezvous and signals, real processes and gloo, without an `import torch` per
worker. What a fork cannot imitate: what an interpreter *imports* at start (the tests about that keep
real processes), what a library reads from the environment as it is imported (torch's and typer's
TYPER_USE_RICH; the thread counts and PYTHONWARNINGS are applied in each child), `sys.flags` other than -B,
and the hash seed (shared with the zygote). PAINTERLY_TESTS_REAL_PROCESSES=1 runs real processes instead.

The zygote is this file run as a script (`python cli_processes.py ADDRESS`); it is ended at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

# What the zygote imports before it forks: torch, the CLI, and what its commands import lazily (pure Python,
# starting no thread). Not onnxruntime, cv2 or av: each starts a thread at import, and costs little.
# torch._dynamo (~3 CPU-s): DistributedDataParallel's constructor imports it in every torchrun worker, and
# torchvision and the benchmarks' forked jobs do too; the tests of what does *not* import it start real
# interpreters (test_optimizers).
PRELOAD = ("torch", "torch._dynamo", "numpy", "PIL.Image", "painterly.cli", "painterly.apply", "painterly.card",
           "painterly.export",
           "painterly.fast", "painterly.gatys_video", "painterly.images", "painterly.modelfile",
           "painterly.pipeline", "painterly.pixels", "painterly.progress", "painterly.region_models",
           "painterly.samples", "painterly.training", "painterly.weights", "painterly.zoo")
# Imported by typer at a command's first parse, not with typer itself: it imports pydantic, ~0.15 CPU-s that
# every CLI child paid. A typer without it (another version) just loses the head start.
OPTIONAL_PRELOAD = ("typer._adapters",)

# Read by the zygote's libraries as they are imported, so a child could not change them: the zygote starts
# without them and each child applies its own (thread counts through torch, warnings through `warnings`).
_IMPORT_TIME_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONWARNINGS")
_ENVIRONMENT = dict(os.environ)  # as the worker started, before any test's monkeypatch
_SERVED = ""  # in the zygote and the processes forked from it: its address (a launcher forks its workers there)
# Set (to anything) to run every process for real instead: to compare the costs, or to rule the zygote out.
REAL_PROCESSES_ENV = "PAINTERLY_TESTS_REAL_PROCESSES"
_MESSAGE = 1 << 20


# --- the test's side ---------------------------------------------------------------------------------------


class _Zygote:
    """The worker's one zygote process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self.address = ""

    def connect(self) -> socket.socket:
        with self._lock:
            if _SERVED:  # a process forked from the zygote asks the same zygote
                self.address = _SERVED
            elif self._process is None or self._process.poll() is not None:
                self._start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(self.address)
        return sock

    def _start(self) -> None:
        self.address = f"\0painterly-zygote-{os.getpid()}-{time.monotonic_ns()}"
        env = {key: value for key, value in _ENVIRONMENT.items() if key not in _IMPORT_TIME_ENV}
        self._process = subprocess.Popen([sys.executable, __file__, self.address[1:]], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, env=env, cwd="/")
        deadline = time.monotonic() + 120
        while True:  # the socket is bound before the imports; a connection waits in the backlog for them
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
                try:
                    probe.connect(self.address)
                    probe.send(b"{}")  # a request the zygote drops
                    return
                except (FileNotFoundError, ConnectionRefusedError):
                    pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test zygote did not start (exit code {self._process.poll()})")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # it reaps its children first, waiting for any a test left running
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


_ZYGOTE = _Zygote()
atexit.register(_ZYGOTE.stop)


def _parse(command: Sequence[str | os.PathLike]) -> tuple[dict[str, Any], list[str]]:
    """`[sys.executable, [-B] [-u], -m MODULE | -c CODE | SCRIPT, ARGS...]` as the zygote's request fields."""
    words = [os.fspath(word) for word in command]
    if not words or words[0] != sys.executable:
        raise ValueError(f"a forked process runs this interpreter only, not {words[:1]}")
    words = words[1:]
    flags = set()
    while words and words[0] in ("-B", "-u"):  # -u: torchrun starts its workers so
        flags.add(words[0])
        words = words[1:]
    options = {"no_bytecode": "-B" in flags, "unbuffered": "-u" in flags}
    if words and not words[0].startswith("-"):
        return {"kind": "script", "target": words[0], **options}, words
    if len(words) < 2 or words[0] not in ("-m", "-c"):
        raise ValueError(f"a forked process runs `-m MODULE`, `-c CODE` or a script (with -B and -u at most), "
                         f"not {words}")
    kind = "module" if words[0] == "-m" else "code"
    return {"kind": kind, "target": words[1], **options}, words[2:]


class Popen(subprocess.Popen):
    """`subprocess.Popen` for `[sys.executable, "-m", MODULE | "-c", CODE | SCRIPT, ...]`, forked from the zygote.

    Not supported (ValueError): shell, executable, preexec_fn (use `file_size_limit`, RLIMIT_FSIZE in
    the child), pass_fds, user/group/umask changes. `close_fds` is always in effect.
    """

    def __init__(self, args: Sequence[str | os.PathLike], *popenargs: Any, file_size_limit: int | None = None,
                 **kwargs: Any) -> None:
        self._request, self._argv = _parse(args)
        self._request["file_size_limit"] = file_size_limit
        self._forked = not _ENVIRONMENT.get(REAL_PROCESSES_ENV)
        self._connection: socket.socket | None = None
        self._status: int | None = None
        super().__init__(list(args), *popenargs, **kwargs)

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                       creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
                       restore_signals, gid, gids, uid, umask, start_new_session, process_group):
        if not self._forked:
            limit = self._request["file_size_limit"]
            if limit is not None:
                import resource

                preexec_fn = functools.partial(resource.setrlimit, resource.RLIMIT_FSIZE, (limit, limit))
            return super()._execute_child(  # type: ignore[misc]
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags, shell,
                p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, restore_signals, gid, gids, uid, umask,
                start_new_session, process_group)
        if shell or executable or preexec_fn or pass_fds or gid is not None or gids is not None or \
                uid is not None or umask >= 0:
            raise ValueError("a forked process supports no shell, executable, preexec_fn, pass_fds, user, group "
                             "or umask")
        mask = os.umask(0o22)
        os.umask(mask)  # (reading the mask sets it)
        request = {**self._request, "argv": self._argv, "cwd": os.getcwd() if cwd is None else os.fspath(cwd),
                   "umask": mask,
                   "env": dict(os.environ if env is None else {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}),
                   "new_session": bool(start_new_session), "process_group": process_group}
        fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1, errwrite if errwrite != -1 else 2]
        connection = _ZYGOTE.connect()
        try:
            socket.send_fds(connection, [json.dumps(request).encode()], fds)
            reply = json.loads(connection.recv(_MESSAGE) or b'{"lost": true}')
        except BaseException:
            connection.close()
            raise
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)
        if "pid" not in reply:
            connection.close()
            if "errno" in reply:
                raise OSError(reply["errno"], os.strerror(reply["errno"]), reply["filename"])
            raise RuntimeError(f"the test zygote could not start {args}: {reply}")
        self.pid = reply["pid"]
        self._connection = connection
        self._child_created = True

    def _try_wait(self, wait_flags):
        """(pid, wait status) once the zygote has sent the child's status, else (0, 0) under WNOHANG."""
        if not self._forked:
            return super()._try_wait(wait_flags)  # type: ignore[misc]
        if self._status is None:
            connection = self._connection
            if connection is None:
                return self.pid, 0
            connection.setblocking(not wait_flags & os.WNOHANG)
            try:
                message = connection.recv(_MESSAGE)
            except BlockingIOError:
                return 0, 0
            connection.close()
            self._connection = None
            # A lost zygote is reported as SIGKILL: the child's status cannot be known.
            self._status = json.loads(message)["status"] if message else signal.SIGKILL
        return self.pid, self._status

    def _internal_poll(self, _deadstate=None, **_unused):
        if not self._forked:
            return super()._internal_poll(_deadstate)  # type: ignore[misc]
        if self.returncode is None:
            if not self._waitpid_lock.acquire(False):
                return None
            try:
                if self.returncode is None:
                    pid, status = self._try_wait(os.WNOHANG)
                    if pid == self.pid:
                        self._handle_exitstatus(status)
            except OSError:
                if _deadstate is not None:
                    self.returncode = _deadstate
            finally:
                self._waitpid_lock.release()
        return self.returncode


def run(command: Sequence[str | os.PathLike], *, input: str | bytes | None = None, capture_output: bool = False,
        timeout: float | None = None, check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run` with the process forked from the zygote (same arguments; see `Popen`)."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with Popen(command, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            process.kill()
            expired.output, expired.stderr = process.communicate()
            raise
        except BaseException:
            process.kill()
            raise
        code = process.poll()
    if check and code:
        raise subprocess.CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)


# `python -m torch.distributed.run ARGS` (the launcher itself forked, as any command) whose workers torchrun's
# agent starts through `Popen` here: forked from the zygote too (real processes where those are asked for).
TORCHRUN_CODE = f"""
import sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})  # found there only by a real launcher
import cli_processes
del sys.path[0]
cli_processes.fork_torchrun_workers()
from torch.distributed.run import main
main()
"""
TORCHRUN = (sys.executable, "-c", TORCHRUN_CODE)


def fork_torchrun_workers() -> None:
    """(In a torchrun launcher.) Start its worker processes with `Popen` (forked from the zygote), each in a
    session of its own as torchrun starts them; a command the zygote cannot run starts for real."""
    from torch.distributed.elastic.multiprocessing.subprocess_handler import subprocess_handler

    handler_class = subprocess_handler.SubprocessHandler
    real = handler_class._popen

    def popen(handler, args, env):
        try:
            _parse(args)
        except ValueError:
            return real(handler, args, env)
        return Popen(list(args), env=env, stdout=handler._stdout, stderr=handler._stderr, start_new_session=True)

    handler_class._popen = popen


def run_painterly(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
                  input: str | bytes | None = None, timeout: float = 300, text: bool = True,
                  file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`python -m painterly ARGS`, its output captured (a fork of the zygote; see `Popen`)."""
    return run([sys.executable, "-m", "painterly", *args], cwd=cwd, env=env, input=input, timeout=timeout,
               text=text, capture_output=True, file_size_limit=file_size_limit)


# --- the zygote's side -------------------------------------------------------------------------------------


def _serve(address: str) -> None:
    """Accept requests for ever; fork a waiter per request, which forks the child and reports its status."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(128)
    sys.path[0] = "/"  # this script's folder is no child's business
    global _SERVED
    _SERVED = address
    sys.modules["cli_processes"] = sys.modules[__name__]  # what a child's `import cli_processes` finds
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    for name in OPTIONAL_PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    import torch

    default_threads = torch.get_num_threads()
    signal.signal(signal.SIGTERM, _stop)
    listener.settimeout(10)
    worker = os.getppid()
    try:
        while os.getppid() == worker:  # a worker ended without its atexit (os._exit) orphans the zygote: it stops
            try:
                _accept(listener, default_threads)
            except TimeoutError:
                pass
            _reap(os.WNOHANG)
    except _Stopped:
        _reap(0)  # reaped, the waiters' and children's CPU time counts in the worker's, as a child's does


class _Stopped(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stopped


def _reap(flags: int) -> None:
    while True:
        try:
            if os.waitpid(-1, flags)[0] == 0:
                return
        except ChildProcessError:
            return


def _accept(listener: socket.socket, default_threads: int) -> None:
    """Take one request; fork its waiter."""
    connection, _ = listener.accept()
    with connection:
        try:
            message, fds, _, _ = socket.recv_fds(connection, _MESSAGE, 3)
            request = json.loads(message or b"{}")
        except (OSError, ValueError):
            request, fds = {}, []
        if len(fds) == 3 and request:
            if os.fork() == 0:
                listener.close()
                _wait_for_child(connection, request, fds, default_threads)
        for fd in fds:
            os.close(fd)


def _wait_for_child(connection: socket.socket, request: dict, fds: list[int], default_threads: int) -> None:
    """(In the waiter.) Fork the child, send its exit status when it ends."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the child's handlers are a new interpreter's
        pid = os.fork()
        if pid == 0:
            _child(connection, request, fds, default_threads)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        connection.send(json.dumps({"status": status}).encode())
    finally:
        os._exit(0)


def _child(connection: socket.socket, request: dict, fds: list[int], default_threads: int) -> None:
    """(In the child.) Become the process the test asked for, report the pid, run it, exit."""
    try:
        if request["new_session"]:
            os.setsid()
        elif request.get("process_group", -1) >= 0:
            os.setpgid(0, request["process_group"])
        os.chdir(request["cwd"])  # the test's own when it gave none, as a child inherits it
        os.umask(request["umask"])
    except OSError as error:
        connection.send(json.dumps({"errno": error.errno or errno.EINVAL, "filename": request["cwd"]}).encode())
        os._exit(255)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    if request["file_size_limit"] is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (request["file_size_limit"], request["file_size_limit"]))
    env = request["env"]
    os.environ.clear()
    os.environ.update(env)
    _fresh_interpreter_state(env, default_threads, bool(request["no_bytecode"]), bool(request["unbuffered"]))
    connection.send(json.dumps({"pid": os.getpid()}).encode())
    connection.close()
    os._exit(_run(request))


def _fresh_interpreter_state(env: dict[str, str], default_threads: int, no_bytecode: bool,
                             unbuffered: bool) -> None:
    """What a new interpreter would have read from this environment at its start."""
    import warnings

    import torch

    threads = env.get("OMP_NUM_THREADS", "").strip()
    torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else default_threads)
    for option in filter(None, env.get("PYTHONWARNINGS", "").split(",")):
        warnings._setoption(option)  # type: ignore[attr-defined]  # as -W options are applied at start
    sys.dont_write_bytecode = no_bytecode or bool(env.get("PYTHONDONTWRITEBYTECODE"))
    tempfile.tempdir = None  # the temporary folder is looked up again, under this environment's TMPDIR
    _std_streams(env, unbuffered)
    # A new interpreter seeds torch's and numpy's global generators from the OS (and `random` reseeds itself
    # at fork): seed them so, or every child would draw the zygote's numbers.
    torch.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _std_streams(env: dict[str, str], unbuffered: bool) -> None:
    """sys.stdin/stdout/stderr built afresh on fds 0-2, as CPython's create_stdio builds them."""
    import io

    encoding, _, errors = env.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or sys.stdout.encoding
    unbuffered = unbuffered or bool(env.get("PYTHONUNBUFFERED"))
    streams = []
    for fd, name, mode in ((0, "<stdin>", "r"), (1, "<stdout>", "w"), (2, "<stderr>", "w")):
        buffered = fd == 0 or not unbuffered
        stream = open(fd, mode + "b", buffering=-1 if buffered else 0, closefd=False)
        raw = stream.raw if buffered else stream
        raw.name = name
        stream_errors = "backslashreplace" if fd == 2 else (errors or sys.stdout.errors)
        line_buffering = buffered and fd != 0 and (fd == 2 or os.isatty(fd))
        text = io.TextIOWrapper(stream, encoding, stream_errors, "\n", line_buffering, not buffered and fd != 0)
        text.mode = mode  # type: ignore[misc]
        streams.append(text)
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _run(request: dict) -> int:
    """Run the module, code or script as `python -m`/`-c`/`python SCRIPT` does; the interpreter's exit code."""
    import runpy
    import traceback
    import types

    interrupted = False
    try:
        if request["kind"] == "module":
            sys.argv = ["-m", *request["argv"]]
            sys.path[0] = os.getcwd()
            runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
        else:
            main = types.ModuleType("__main__")
            if request["kind"] == "script":
                path = os.path.abspath(request["target"])  # from the cwd asked for, as the interpreter finds it
                sys.argv, sys.path[0], main.__file__ = request["argv"], os.path.dirname(path), path
                try:
                    with open(path, "rb") as file:
                        source, filename = file.read(), path
                except OSError as error:
                    print(f"{sys.executable}: can't open file {path!r}: [Errno {error.errno}] {error.strerror}",
                          file=sys.stderr)
                    return _shut_down(2, False)
            else:
                sys.argv, sys.path[0] = ["-c", *request["argv"]], ""
                source, filename = request["target"], "<string>"
            sys.modules["__main__"] = main
            exec(compile(source, filename, "exec"), main.__dict__)
        code = 0
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        error.__traceback__ = error.__traceback__.tb_next if error.__traceback__ else None  # not this frame
        try:
            sys.excepthook(type(error), error, error.__traceback__)
        except BaseException:
            traceback.print_exception(error)
        code = 1
    return _shut_down(code, interrupted)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _shut_down(code: int, interrupted: bool) -> int:
    """Py_FinalizeEx's order: join the threads, run atexit, flush stdout (120 when that fails)."""
    import atexit as atexit_

    threading._shutdown()  # type: ignore[attr-defined]
    atexit_._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception as error:
            if stream is sys.stdout:
                sys.stderr.write(f"Exception ignored in: {stream!r}\n{type(error).__name__}: {error}\n")
                code = 120
    if interrupted:  # an uncaught KeyboardInterrupt ends the process by SIGINT, as CPython does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


if __name__ == "__main__":
    _serve("\0" + sys.argv[1])  # an abstract socket: no file to clean up
