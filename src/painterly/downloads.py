"""The one streaming download of the project: the VGG weights' and the model zoo's.

A download streams a URL into a file the caller names (a temporary, from `atomic.atomic_path`),
reports each chunk as a `DownloadEvent` and returns the SHA-256 of what it wrote; the caller checks
the hash and decides what to keep. A `max_size` stops a server that sends far more than the file
it should be (a wrong URL, a hostile mirror) before the disk fills: a declared Content-Length
over it is refused before reading, and reading stops at the first byte past it.

What a failed download raises tells whose fault it is: one of `NETWORK_ERRORS` (offline, refused,
timeout, HTTP error, TLS), `DownloadTooLarge`, or an `OSError` from writing the file, which is the
disk's (for `atomic_path` to word). No torch here: fetching needs none.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from .events import Callback, DownloadEvent

CHUNK = 1 << 20
USER_AGENT = "painterly"
# What a failed download raises (ssl.SSLError can escape urlopen mid-stream); other OSErrors are the disk's.
NETWORK_ERRORS = (URLError, HTTPException, TimeoutError, ConnectionError, ssl.SSLError)


class DownloadTooLarge(Exception):
    """The server sends (or declares) more bytes than the download may have."""

    def __init__(self, url: str, limit: int, declared: int | None = None):
        self.url, self.limit, self.declared = url, limit, declared
        said = f"declares {declared} bytes" if declared is not None else "sends more"
        super().__init__(f"{said}, more than the {limit} bytes allowed")


def fetch(url: str, dst: str | os.PathLike, *, timeout: float, callback: Callback,
          max_size: int | None = None) -> str:
    """Stream `url` into `dst`, reporting each chunk as a DownloadEvent, and return its sha256 (hex).

    Raises one of NETWORK_ERRORS for the network's failures, DownloadTooLarge past `max_size`
    (nothing more is read), and a plain OSError for a failure to write `dst`.
    """
    digest = hashlib.sha256()
    with urlopen(Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout) as response:
        total = _content_length(response.headers.get("Content-Length"))
        if max_size is not None and total is not None and total > max_size:
            raise DownloadTooLarge(url, max_size, total)
        done = 0
        callback(DownloadEvent(url, done, total))
        with open(dst, "wb") as out:
            while chunk := response.read(CHUNK if max_size is None else min(CHUNK, max_size - done + 1)):
                done += len(chunk)
                if max_size is not None and done > max_size:
                    raise DownloadTooLarge(url, max_size)
                out.write(chunk)
                digest.update(chunk)
                callback(DownloadEvent(url, done, total))
    return digest.hexdigest()


def reason(error: BaseException) -> str:
    """A short one-line reason for a failed download, for the messages that name the URL."""
    if isinstance(error, HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, URLError):
        text = str(error.reason)
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _content_length(value: str | None) -> int | None:
    """The declared size, None when absent, zero or not a number (a server's header is not trusted)."""
    try:
        size = int(value or 0)
    except ValueError:
        return None
    return size if size > 0 else None
