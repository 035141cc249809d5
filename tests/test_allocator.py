"""spp_scl/core/allocator.py: after keep_freed_memory(), a large buffer comes from the heap and stays there when freed
(glibc's own accounting, mallinfo2), where by default it is mapped afresh and unmapped when freed; a training
process is set so as soon as it opens its splits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spp_scl.core.allocator import keep_freed_memory

# In a fresh interpreter (the setting is process-wide): a 64 MiB buffer, glibc's accounting while it lives and
# after it is freed. hblkhd: bytes in mmapped blocks; fordblks: free bytes kept in the heap.
PROGRAM = """
import ctypes, json, sys
import numpy as np
from spp_scl.core.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "keep":
    assert keep_freed_memory()
elif sys.argv[1] == "training":  # what every training path does first: open the cache's splits
    from spp_scl.cache.synthetic import write_synthetic_cache
    from spp_scl.heads.presets import resolve_config
    from spp_scl.runs.train.trainer import open_splits
    write_synthetic_cache(sys.argv[2], {"train": 8, "dev": 4}, layers=2, dim=8, map_shape=(4, 2, 2), mean_tokens=3, seed=1)
    open_splits(sys.argv[2], resolve_config("mvsa-single"))
buffer = np.ones(64 * 2**20, dtype=np.uint8)
alive = libc.mallinfo2()
del buffer
freed = libc.mallinfo2()
print(json.dumps({"mapped_alive": alive.hblkhd, "kept_free": freed.fordblks}))
"""
MIB64 = 64 * 2**20


def _accounting(mode: str, *args: str) -> dict:
    output = subprocess.run([sys.executable, "-c", PROGRAM, mode, *args], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt and mallinfo2 are glibc's (Linux)")
def test_a_large_buffer_comes_from_the_heap_and_stays_there_when_freed():
    default, kept = _accounting("default"), _accounting("keep")
    assert default["mapped_alive"] >= MIB64 and default["kept_free"] < MIB64  # mapped, and unmapped when freed
    assert kept["mapped_alive"] < MIB64 and kept["kept_free"] >= MIB64  # from the heap, and kept for reuse


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt and mallinfo2 are glibc's (Linux)")
def test_training_reuses_freed_memory_once_it_opens_its_splits(tmp_path):
    trained = _accounting("training", str(tmp_path / "tiny.h5"))
    assert trained["mapped_alive"] < MIB64 and trained["kept_free"] >= MIB64


def test_it_says_whether_it_took_effect():
    assert keep_freed_memory() is sys.platform.startswith("linux")
