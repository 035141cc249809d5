"""Hashes of what determines the cached features, and a readable difference between two fingerprints."""

from __future__ import annotations

import hashlib
import json

import torch

from spp_scl.cache.layout import FORMAT_VERSION as FORMAT_VERSION  # the fingerprint records the file format

# What a format 1 fingerprint did not record. A format 1 cache (or unfinished extraction) is compared without
# them: its features are the same; it only lacks the checksums (and the plugin source hash) that format 2 adds.
ADDED_IN_FORMAT_2 = ("format_version", "image.source_sha256")
# What a fingerprint written before a setting existed means by its absence: every such cache holds the first token
# as each layer's sentence vector.
READ_WHEN_ABSENT = {"text.sentence_token": "first"}


def with_defaults(fingerprint: dict) -> dict:
    """A stored fingerprint with the settings it predates filled in as they were then (READ_WHEN_ABSENT)."""
    text = fingerprint.get("text")
    if isinstance(text, dict) and "sentence_token" not in text:
        return {**fingerprint, "text": {**text, "sentence_token": READ_WHEN_ABSENT["text.sentence_token"]}}
    return fingerprint


def sha256_state_dict(module: torch.nn.Module) -> str:
    """A hash of a module's weights and buffers (names, dtypes, shapes, bytes), independent of file format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def cache_differences(stored: dict, wanted: dict) -> list[str]:
    """differences() between a cache's stored fingerprint and this run's, reading a format 1 one as it was meant."""
    if not isinstance(stored, dict):
        return [f"fingerprint: cache has {stored!r}, not a fingerprint"]
    stored = with_defaults(stored)
    if stored.get("format_version") == 1:
        old, new = _flatten(stored), _flatten(wanted)
        for key in ADDED_IN_FORMAT_2:
            old.pop(key, None)
            new.pop(key, None)
        return _compare(old, new)
    return differences(stored, wanted)


def differences(stored: dict, wanted: dict) -> list[str]:
    """One line per setting that differs: 'text.layers: cache has [9, 10, 11, 12], this run asks [11, 12]'."""
    return _compare(_flatten(stored), _flatten(wanted))


def _compare(old: dict, new: dict) -> list[str]:
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            lines.append(f"{key}: cache has {old.get(key, '<absent>')!r}, this run asks {new.get(key, '<absent>')!r}")
    return lines
