"""For tests that race real processes: a file server that holds every answer until the test says go,
and whether a process is waiting for a lock. Nothing here times anything: a test waits for a state
(a request arrived, a process blocked on its flock), with a deadline only against hanging forever.
(Imported as `race_helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from helpers import serving

HANG_GUARD = 120.0  # seconds: a state that has not come by then never will



@dataclass
class HeldServer:
    """A real HTTP server on 127.0.0.1: `url`; `requests`, the GETs so far; `go`, set to let answers finish."""

    url: str
    requests: int = 0
    go: threading.Event = field(default_factory=threading.Event)


@contextmanager
def held_file_server(root: Path) -> Iterator[HeldServer]:
    """Serve the files in `root` by name (query strings ignored), each answer stopping after its headers
    and first half until `go` is set (set on leaving, too): a download caught in the middle."""
    server: HeldServer

    class Held(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests += 1
            path = root / unquote(urlparse(self.path).path).lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            with suppress(OSError):  # a client killed mid-way
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                server.go.wait()
                self.wfile.write(data[len(data) // 2:])

        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Held)) as url:
        server = HeldServer(url)
        try:
            yield server
        finally:
            server.go.set()  # a held answer must not keep the server from shutting down


def waits_for_a_lock(pid: int) -> bool:
    """Whether process `pid` is blocked waiting for a file lock (Linux: a '->' line of /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()  # "1: -> FLOCK ADVISORY WRITE PID DEVICE:INODE 0 EOF"
        if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
            return True
    return False


def wait_until(happened: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    """Return once `happened()`; fail with the process's output if it ends first, or at HANG_GUARD."""
    deadline = time.monotonic() + HANG_GUARD
    while not happened():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process ended ({process.returncode}) before {what}: {out}{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {HANG_GUARD} s")
        time.sleep(0.02)
