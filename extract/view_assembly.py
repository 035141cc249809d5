"""The views of the finished shards laid out in the cache (called by extract/assembly.py when there are views).

A shard holds the views of its kept records in the view splits, in order (`view_records` in its metadata), as
`view_image_maps` [n, Vi, C, h, w], `view_text_lengths` [n] and `view_token_states` [t, Vt, Kv, D]. A shard
whose view records are not exactly its kept records of the view splits is damaged (named, extracted again).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spp_scl.cache.view_layout import ViewWriter
from spp_scl.extract.shards import ShardDamaged, read_shard


def view_sizes(
    files: list[Path], dataset, splits: set[str], text_views: int, present: set[str]
) -> dict[str, tuple[int, int]]:
    """(records, view token rows) per view split present in the cache, from the shards' metadata."""
    sizes = {split: (0, 0) for split in splits if split in present}
    for path in files:
        names = ("view_text_lengths",) if text_views else ()
        arrays, metadata, _ = read_shard(path, names=names)
        kept = json.loads(metadata["records"])
        expected = [index for index in kept if dataset.records[index].split in splits]
        try:
            records = json.loads(metadata["view_records"])
        except (KeyError, ValueError):
            raise ShardDamaged(f"shard {path} has no view records (made without views?)") from None
        if records != expected:
            raise ShardDamaged(f"shard {path}: its view records are not its kept records of the view splits")
        lengths = arrays["view_text_lengths"] if text_views else np.zeros(len(records), np.int32)
        if len(lengths) != len(records):
            raise ShardDamaged(f"shard {path}: {len(lengths)} view text lengths for {len(records)} view records")
        for index, length in zip(records, lengths):
            split = dataset.records[index].split
            count, tokens = sizes[split]
            sizes[split] = (count + 1, tokens + int(length))
    return sizes


class ShardViews:
    """Hands the view rows of one shard to the view writer, run by run (the clean writer's runs of one split)."""

    def __init__(self, writer: ViewWriter, arrays: dict):
        self.writer, self.arrays, self.row = writer, arrays, 0
        lengths = arrays.get("view_text_lengths")
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]) if lengths is not None else None

    def append(self, split: str, count: int) -> None:
        if split not in self.writer.position:
            return
        start, end = self.row, self.row + count
        maps = self.arrays["view_image_maps"][start:end] if self.writer.image_views else None
        lengths = states = None
        if self.writer.text_views:
            lengths = self.arrays["view_text_lengths"][start:end]
            states = self.arrays["view_token_states"][self.offsets[start] : self.offsets[end]]
        self.writer.append(split, maps, lengths, states)
        self.row = end
