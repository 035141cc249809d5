"""The random stream of each stored view: one seed per (view seed, kind, split, record id, view number).

A view's randomness (its dropout masks, its augmentation, its batch-mates) depends on nothing else: not on the
order in which records are processed, their batch, the process that handles them or where a stopped extraction
resumed. So a resumed, a multi-process or an uninterrupted extraction write the same views, and a record keeps
its views when other records are added to or removed from the data.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def view_seed(seed: int, kind: str, split: str, record_id: str, view: int) -> int:
    """A 63-bit seed from a hash of its parts (their separators cannot occur in a number or a kind name)."""
    text = f"{seed}\x1f{kind}\x1f{split}\x1f{record_id}\x1f{view}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def numpy_stream(seed: int, kind: str, split: str, record_id: str, view: int) -> np.random.Generator:
    return np.random.default_rng(view_seed(seed, kind, split, record_id, view))


def torch_stream(seed: int, kind: str, split: str, record_id: str, view: int) -> torch.Generator:
    """A CPU generator: the same masks whichever device runs the encoder."""
    return torch.Generator(device="cpu").manual_seed(view_seed(seed, kind, split, record_id, view))
