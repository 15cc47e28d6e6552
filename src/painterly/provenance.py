"""What made an output: input files named with their SHA-256, for the settings every output stores."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, read in chunks (inputs and models can be large)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def describe_file(path: str | os.PathLike) -> dict:
    """{"file": the path as given, "sha256": its digest}."""
    return {"file": os.fspath(path), "sha256": file_sha256(path)}
