"""Encoding an extraction's shards: records decoded ahead on threads, the frozen encoders' forward passes shard by
shard, each shard written (extract/shards.py) while the next is encoded. extract/pipeline.py decides which shards
this process encodes; the shard plan depends only on the records and the shard size."""

from __future__ import annotations

import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from spp_scl.extract.config import ExtractConfig
from spp_scl.extract.finite_check import check_finite
from spp_scl.extract.image_encoder import ImageEncoder
from spp_scl.extract.images import ImageProblem, load_pixels, load_rgb, to_pixels
from spp_scl.extract.records import BadInput, Dataset, Record
from spp_scl.extract.shards import save_shard, shard_path
from spp_scl.extract.text_encoder import TextEncoder
from spp_scl.extract.views import ViewPlan


def storage_dtype(name: str) -> torch.dtype:
    if name not in ("float16", "float32"):
        raise ValueError(f"--dtype {name}: choose float16 or float32")
    return getattr(torch, name)


def prefetch(function, items, workers: int, depth: int):
    """function(item) for each item, in order, computed `depth` items ahead on `workers` threads
    (image decoding overlaps the forward pass; PIL and NumPy release the GIL while they work)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _load(record: Record, preprocess, views: ViewPlan | None = None):
    """The record's pixels (or its ImageProblem); with image views to make, (pixels, the views' crops)."""
    try:
        if views is None or not views.wants(record) or views.augment is None:
            return load_pixels(record.image, preprocess)
        rgb = load_rgb(record.image)
        return to_pixels(rgb, preprocess), views.image_arrays(record, rgb, preprocess)
    except ImageProblem as problem:
        return problem


def plan_shards(count: int, shard_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def extract_shard(
    records: list[Record],
    first_index: int,
    loaded,
    text: TextEncoder,
    image: ImageEncoder,
    config: ExtractConfig,
    progress,
    views: ViewPlan | None = None,
) -> tuple[dict, dict]:
    """Features of one shard's records: (tensors, metadata). `loaded` yields each record's pixels or problem.
    With `views`, the shard also holds the views of its records in the view splits (extract/views.py)."""
    dtype = storage_dtype(config.dtype)
    kept, skipped, maps = [], [], []
    batch_pixels = []
    view_inputs = {}  # row -> the augmented crops, or the clean pixels when only batch statistics vary

    def run_images():
        if batch_pixels:
            maps.append(image(torch.stack(batch_pixels)).to(dtype))
            batch_pixels.clear()

    for row, record in enumerate(records):
        pixels = next(loaded)
        crops = None
        if isinstance(pixels, tuple):
            pixels, crops = pixels
        if isinstance(pixels, ImageProblem):
            if config.strict:
                raise BadInput(f"{record.source}: record id {record.id!r}: {pixels} (strict mode)")
            skipped.append({"index": first_index + row, "reason": str(pixels)})
        else:
            kept.append(row)
            batch_pixels.append(pixels)
            if views is not None and views.wants(record):
                view_inputs[row] = crops if views.augment is not None else pixels
            if len(batch_pixels) == config.image_batch_size:
                run_images()
        progress(0.5)
    run_images()

    # Texts sorted by length within the shard, so a batch pads to nearly nothing.
    texts = [records[row].text for row in kept]
    lengths = text.token_lengths(texts) if texts else []
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    encoded = [None] * len(texts)
    for start in range(0, len(order), config.text_batch_size):
        chunk = order[start : start + config.text_batch_size]
        for i, result in zip(chunk, text.encode([texts[i] for i in chunk])):
            encoded[i] = result
        progress(0.5 * len(chunk))
    progress(0.5 * (len(records) - len(kept)))

    k, d = len(text.layers), text.dim
    tensors = {
        "image_maps": torch.cat(maps) if maps else torch.zeros(0, 1, 1, 1, dtype=dtype),
        "first_token": torch.stack([f for f, _ in encoded]).to(dtype) if encoded else torch.zeros(0, k, d, dtype=dtype),
        "token_states": (
            torch.cat([t.transpose(0, 1) for _, t in encoded]).to(dtype).contiguous()
            if encoded
            else torch.zeros(0, k, d, dtype=dtype)
        ),
        "text_lengths": torch.tensor([t.shape[1] for _, t in encoded], dtype=torch.int32),
    }
    metadata = {
        "records": json.dumps([first_index + row for row in kept]),
        "ids": json.dumps([records[row].id for row in kept]),
        "skipped": json.dumps(skipped),
    }
    rows = []
    if views is not None:
        rows = [row for row in kept if row in view_inputs]
        view_tensors, view_metadata = views.shard_views(
            [records[row] for row in rows],
            [view_inputs[row] for row in rows],
            first_index,
            text,
            image,
            dtype,
            config.text_batch_size,
            config.image_batch_size,
            progress,
        )
        tensors.update(view_tensors)
        metadata.update(view_metadata, view_records=json.dumps([first_index + row for row in rows]))
    check_finite(tensors, records, kept, rows, config.dtype)
    return tensors, metadata


def extract_shards(
    mine: list[int],
    shards,
    parts: Path,
    dataset: Dataset,
    text: TextEncoder,
    image: ImageEncoder,
    config: ExtractConfig,
    show: bool,
    views: ViewPlan | None = None,
) -> None:
    """Extract this process's unfinished shards; image decoding, the forward passes and writing overlap."""
    from tqdm.auto import tqdm

    pending_records = [r for i in mine for r in dataset.records[shards[i][0] : shards[i][1]]]
    loaded = prefetch(
        lambda r: _load(r, image.preprocess, views), pending_records, config.workers, depth=2 * config.image_batch_size
    )
    bar = tqdm(
        total=len(pending_records) + (views.work(pending_records) if views is not None else 0),
        unit="rec",
        desc="extract",
        disable=not (config.progress and show),
        smoothing=0.1,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} [{elapsed}<{remaining}, {rate_fmt}]",
    )
    with bar, ThreadPoolExecutor(max_workers=1) as writer:
        last_write = None
        for i in mine:
            start, end = shards[i]
            tensors, metadata = extract_shard(
                dataset.records[start:end], start, loaded, text, image, config, bar.update, views
            )
            if last_write is not None:
                last_write.result()
            last_write = writer.submit(save_shard, shard_path(parts, i), tensors, metadata)
        if last_write is not None:
            last_write.result()
