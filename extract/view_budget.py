"""A bound on `--views`: what the views will take is estimated before any is made, and an extraction whose views
cannot fit is refused with the estimate, instead of growing until the disk or the memory is full.

Per record, a text view holds its tokens' states and first-token vectors in the view layers, an image view one
image map. The token count is the mean over (up to SAMPLE of) the records that get views, from the tokenizer
alone; the map's size comes from one forward pass of the image encoder on a blank image. Two limits:
- disk: the finished shards and the cache assembled from them exist together for a moment, so twice the
  views' bytes must be free at the output (what the unfinished extraction already wrote counts as free);
- memory: one shard's views are held in memory while they are encoded and written, so they must fit within
  half of the memory available now (cache/reader.py's budget).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from spp_scl.cache.reader import memory_budget
from spp_scl.extract.records import BadInput, Dataset

SAMPLE = 512  # texts tokenized to estimate the mean length


def view_bytes_per_record(plan, dataset: Dataset, text, image, dtype: str) -> int:
    """The estimated bytes of one record's views, in the storage type."""
    itemsize = torch.finfo(getattr(torch, dtype)).bits // 8
    total = 0
    if plan.text_views:
        records = [record for record in dataset.records if plan.wants(record)][:SAMPLE]
        lengths = text.token_lengths([plan.text_for(record) for record in records]) if records else [0]
        tokens = sum(lengths) / max(len(lengths), 1)
        total += plan.text_views * len(plan.text_layers) * text.dim * (tokens + 1) * itemsize
    if plan.image_views:
        crop = image.preprocess.crop
        total += plan.image_views * image(torch.zeros(1, 3, crop, crop))[0].numel() * itemsize
    return int(total)


def check_view_budget(plan, dataset: Dataset, text, image, config, cache: Path, parts: Path) -> None:
    """Refuse views that would not fit on the disk at `cache` or, one shard's worth, in memory."""
    records = sum(plan.wants(record) for record in dataset.records)
    per_record = view_bytes_per_record(plan, dataset, text, image, config.dtype)
    needed = 2 * per_record * records
    written = sum(path.stat().st_size for path in parts.glob("*") if path.is_file()) if parts.is_dir() else 0
    free = shutil.disk_usage(cache.parent).free + written
    each = f"{records} records x {_size(per_record)} of views each ({plan.count} per record)"
    if needed > free:
        raise BadInput(
            f"--views {config.views}: the views would take about {_size(needed)} on disk ({each}, twice while the "
            f"cache is assembled), and {_size(free)} are free at {cache.parent}: ask for fewer views, fewer "
            f"--view-splits or --view-text-layers"
        )
    shard = per_record * min(config.shard_size, max(records, 1))
    budget = memory_budget()
    if shard > budget:
        raise BadInput(
            f"--views {config.views}: one shard's views would take about {_size(shard)} of memory "
            f"({min(config.shard_size, records)} records x {_size(per_record)}), over the {_size(budget)} "
            f"available for them: lower --shard-size or --views"
        )


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("not reached")
