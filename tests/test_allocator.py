"""keep_freed_memory: glibc's malloc told to keep large freed blocks for reuse."""

import subprocess
import sys

import pytest

CHECK = """
import ctypes
from painterly.allocator import keep_freed_memory
first, second = keep_freed_memory(), keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
before = resident_mib()
block = libc.malloc(256 << 20)  # 256 MiB: mmap'd by glibc's default, from the heap once tuned
ctypes.memset(block, 1, 256 << 20)
libc.free(ctypes.c_void_p(block))
print(first, second, resident_mib() - before)
"""


def run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_freed_large_blocks_stay_in_the_process():
    applied, again, kept_mib = run(CHECK)
    assert (applied, again) == ("True", "True")
    assert int(kept_mib) >= 200  # the freed 256 MiB stays mapped, ready for the next layer
    *_, kept_by_default = run(CHECK.replace("first, second = keep_freed_memory(), keep_freed_memory()",
                                            "first = second = None"))
    assert int(kept_by_default) < 50  # glibc's default unmaps it at once
