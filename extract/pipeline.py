"""One extraction: dataset -> frozen encoders -> shard files -> one HDF5 cache.

Why shards: an extraction must survive Ctrl-C or kill -9 at any point and resume without redoing finished
work, and an HDF5 file being written is not crash-safe. So the records (in canonical order) are cut into
fixed shards; each shard's features go to `<cache>.parts/shard-NNNNN.safetensors`, written to a temporary
name and renamed, so a shard file exists whole or not at all. A rerun skips the shards that exist. When all
exist, they are laid out in the HDF5 cache (also written under a temporary name and renamed). The shard plan
depends only on the records and the batch sizes, never on where a run stopped or on how many processes ran
it, so a resumed or a multi-process run computes every batch exactly as one uninterrupted run does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cache.layout import CacheWriter, read_attrs, read_skipped, skip_reason_counts
from extract.config import ExtractConfig
from extract.fingerprint import FORMAT_VERSION, differences
from extract.image_encoder import ImageEncoder
from extract.images import ImageProblem, load_pixels
from extract.records import BadInput, Dataset, Record, cache_name, read_dataset
from extract.text_encoder import TextEncoder
from spp_scl.errors import Refused

logger = logging.getLogger(__name__)


class CacheMismatch(Refused):
    """An existing cache (or unfinished extraction) was made with other settings."""


@dataclass
class Summary:
    path: Path
    records: dict[str, int]
    skipped: list[dict]
    file_bytes: int
    seconds: float
    up_to_date: bool = False

    def text(self) -> str:
        lines = [f"cache {self.path}" + (" is up to date: nothing to do" if self.up_to_date else " written")]
        lines.append("records: " + ", ".join(f"{split} {count}" for split, count in self.records.items()))
        lines.append(
            f"skipped: {len(self.skipped)}" + "".join(f"\n  {n} x {r}" for r, n in skip_reason_counts(self.skipped))
        )
        if self.skipped:
            lines.append(f"  the list with reasons: {skipped_report_path(self.path)}")
        total = max(sum(self.records.values()), 1)
        lines.append(
            f"file size: {self.file_bytes / 2**20:.1f} MiB ({self.file_bytes / total / 1024:.1f} KiB per record)"
        )
        lines.append(f"time: {self.seconds:.1f} s")
        return "\n".join(lines)


def skipped_report_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".skipped.csv")


def parts_folder(cache: Path) -> Path:
    return cache.with_name(cache.name + ".parts")


def _dtype(name: str) -> torch.dtype:
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


def _load(record: Record, preprocess):
    try:
        return load_pixels(record.image, preprocess)
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
) -> tuple[dict, dict]:
    """Features of one shard's records: (tensors, metadata). `loaded` yields each record's pixels or problem."""
    dtype = _dtype(config.dtype)
    kept, skipped, maps = [], [], []
    batch_pixels = []

    def run_images():
        if batch_pixels:
            maps.append(image(torch.stack(batch_pixels)).to(dtype))
            batch_pixels.clear()

    for row, record in enumerate(records):
        pixels = next(loaded)
        if isinstance(pixels, ImageProblem):
            if config.strict:
                raise BadInput(f"{record.source}: record id {record.id!r}: {pixels} (strict mode)")
            skipped.append({"index": first_index + row, "reason": str(pixels)})
        else:
            kept.append(row)
            batch_pixels.append(pixels)
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
    return tensors, metadata


def _save_shard(path: Path, tensors: dict, metadata: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _extract_shards(
    mine: list[int],
    shards,
    parts: Path,
    dataset: Dataset,
    text: TextEncoder,
    image: ImageEncoder,
    config: ExtractConfig,
    show: bool,
) -> None:
    """Extract this process's unfinished shards; image decoding, the forward passes and writing overlap."""
    from tqdm.auto import tqdm

    pending_records = [r for i in mine for r in dataset.records[shards[i][0] : shards[i][1]]]
    loaded = prefetch(
        lambda r: _load(r, image.preprocess), pending_records, config.workers, depth=2 * config.image_batch_size
    )
    bar = tqdm(
        total=len(pending_records),
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
                dataset.records[start:end], start, loaded, text, image, config, bar.update
            )
            if last_write is not None:
                last_write.result()
            last_write = writer.submit(_save_shard, parts / f"shard-{i:05d}.safetensors", tensors, metadata)
        if last_write is not None:
            last_write.result()


def _read_json(path: Path, parts: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CacheMismatch(f"{path} is unreadable ({error}); delete {parts} or pass --force") from None


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def build_fingerprint(dataset: Dataset, text: TextEncoder, image: ImageEncoder, dtype: str) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "dataset": {
            "name": dataset.name,
            "class_names": dataset.class_names,
            "sources_sha256": dataset.sources_sha256(),
            "policy": dataset.policy,
        },
        "text": text.describe(),
        "image": image.describe(),
        "dtype": dtype,
    }


def _check(stored: dict, wanted: dict, what: Path, force: bool) -> bool:
    """True when `stored` matches; raises CacheMismatch when not (unless force, then False)."""
    lines = differences(stored, wanted)
    if not lines:
        return True
    if force:
        return False
    raise CacheMismatch(
        f"{what} was made with other settings:\n  "
        + "\n  ".join(lines)
        + "\nUse another --out for these settings, or pass --force to rebuild it."
    )


def assemble(
    cache: Path, parts: Path, shards: list[tuple[int, int]], dataset: Dataset, attrs: dict, text: TextEncoder
) -> list[dict]:
    """Lay the finished shards out in the HDF5 cache; returns the full skip list. Two passes, one shard file
    open at a time: the sizes first (the HDF5 arrays are made at their final size), then the features."""
    files = [parts / f"shard-{i:05d}.safetensors" for i in range(len(shards))]
    skipped = [s.as_dict() for s in dataset.skipped]
    sizes, map_shape, kept = {}, None, []
    for path in files:
        with safe_open(str(path), framework="np") as handle:
            meta, lengths = handle.metadata(), handle.get_tensor("text_lengths")
            if handle.get_slice("image_maps").get_shape()[0]:
                map_shape = map_shape or tuple(handle.get_slice("image_maps").get_shape()[1:])
        indices = json.loads(meta["records"])
        kept.append((indices, lengths))
        for index, length in zip(indices, lengths):
            records, tokens = sizes.get(dataset.records[index].split, (0, 0))
            sizes[dataset.records[index].split] = (records + 1, tokens + int(length))
        for item in json.loads(meta["skipped"]):
            record = dataset.records[item["index"]]
            skipped.append({"split": record.split, "id": record.id, "source": record.source, "reason": item["reason"]})
    map_shape = map_shape or (1, 1, 1)
    attrs = {**attrs, "image_map_shape": list(map_shape)}
    writer = CacheWriter(cache, attrs, sizes, map_shape, (len(text.layers), text.dim), attrs["dtype"])
    try:
        for path, (indices, lengths) in zip(files, kept):
            with safe_open(str(path), framework="np") as handle:
                maps, first, tokens = (handle.get_tensor(n) for n in ("image_maps", "first_token", "token_states"))
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            start = 0
            while start < len(indices):  # one append per run of records of the same split
                split = dataset.records[indices[start]].split
                end = start
                while end < len(indices) and dataset.records[indices[end]].split == split:
                    end += 1
                chosen = [dataset.records[i] for i in indices[start:end]]
                writer.append(
                    split,
                    [r.id for r in chosen],
                    np.array([r.label for r in chosen]),
                    lengths[start:end],
                    maps[start:end],
                    first[start:end],
                    tokens[offsets[start] : offsets[end]],
                )
                start = end
        writer.finish(skipped)
    except BaseException:
        writer.abort()
        raise
    return skipped


def write_skipped_report(cache: Path, skipped: list[dict]) -> None:
    import csv

    report = skipped_report_path(cache)
    if not skipped:
        report.unlink(missing_ok=True)
        return
    with report.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["split", "id", "source", "reason"])
        writer.writeheader()
        writer.writerows(skipped)


def _summary(cache: Path, seconds: float, up_to_date: bool) -> Summary:
    import h5py

    with h5py.File(cache, "r") as file:
        records = {split: len(file[split]["ids"]) for split in ("train", "dev", "test") if split in file}
    return Summary(cache, records, read_skipped(cache), cache.stat().st_size, seconds, up_to_date)


def run(config: ExtractConfig, log=None) -> Summary:
    log = log or logger.info
    from accelerate import PartialState
    from transformers.utils import logging as transformers_logging

    started = time.time()
    state = PartialState()
    transformers_logging.disable_progress_bar()
    _dtype(config.dtype)
    dataset = read_dataset(
        config.data, config.dataset, config.images, config.classes, config.strict, config.allow_non_english
    )
    if not dataset.records:
        raise BadInput(f"{config.data}: no usable record ({len(dataset.skipped)} skipped)")
    cache = (
        Path(config.out)
        if config.out
        else Path("cache/files") / cache_name(dataset, config.text_encoder, config.image_encoder)
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    parts = parts_folder(cache)
    text = TextEncoder(config.text_encoder, config.text_layers, config.max_length, state.device)
    image = ImageEncoder(config.image_encoder, state.device, config.image_resize, config.image_crop)
    fingerprint = build_fingerprint(dataset, text, image, config.dtype)

    if cache.exists() and _check(read_attrs(cache)["fingerprint"], fingerprint, cache, config.force):
        state.wait_for_everyone()
        if state.is_main_process:
            shutil.rmtree(parts, ignore_errors=True)
            write_skipped_report(cache, read_skipped(cache))  # a kill right after the rename may have lost it
        return _summary(cache, time.time() - started, up_to_date=True)
    plan = {
        "shard_size": config.shard_size,
        "image_batch_size": config.image_batch_size,
        "text_batch_size": config.text_batch_size,
        "records": len(dataset.records),
    }
    resuming = (parts / "fingerprint.json").exists() and _check(
        _read_json(parts / "fingerprint.json", parts), fingerprint, parts, config.force
    )
    if resuming:
        stored_plan = _read_json(parts / "plan.json", parts)
        if stored_plan != plan:
            log(f"resuming {parts} with its batch plan {stored_plan} (the batch sizes it was started with)")
            plan = stored_plan
    state.wait_for_everyone()
    if state.is_main_process and not resuming:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        _write_json(parts / "plan.json", plan)
        _write_json(parts / "fingerprint.json", fingerprint)
    state.wait_for_everyone()
    config = ExtractConfig(
        **{
            **asdict(config),
            "shard_size": plan["shard_size"],
            "image_batch_size": plan["image_batch_size"],
            "text_batch_size": plan["text_batch_size"],
        }
    )
    shards = plan_shards(len(dataset.records), config.shard_size)
    finished = {i for i in range(len(shards)) if (parts / f"shard-{i:05d}.safetensors").exists()}
    if finished and state.is_main_process:
        log(f"resuming: {len(finished)} of {len(shards)} shards already extracted in {parts}")
    mine = [i for i in range(len(shards)) if i % state.num_processes == state.process_index and i not in finished]
    error = None
    try:
        # Each process checks the unfinished work against its own settings: processes could differ (weights, files).
        _check(_read_json(parts / "fingerprint.json", parts), fingerprint, parts, force=False)
        _extract_shards(mine, shards, parts, dataset, text, image, config, show=state.is_main_process)
    except Exception as caught:  # reported after every process has stopped, so none waits for ever
        error = caught
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        if any(gather_object([error is not None])) and error is None:
            raise RuntimeError("another extraction process failed; see its error above (finished shards are kept)")
    if error is not None:
        raise error
    state.wait_for_everyone()

    if state.is_main_process:
        import h5py
        import safetensors
        import transformers

        attrs = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset.name,
            "class_names": dataset.class_names,
            "text_layers": text.layers,
            "dtype": config.dtype,
            "fingerprint": fingerprint,
            "provenance": {
                "data": str(config.data),
                "images": str(dataset.image_root),
                "text_encoder": config.text_encoder,
                "image_encoder": config.image_encoder,
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "h5py": h5py.__version__,
                    "safetensors": safetensors.__version__,
                    "python": sys.version.split()[0],
                },
            },
        }
        skipped = assemble(cache, parts, shards, dataset, attrs, text)
        write_skipped_report(cache, skipped)
        shutil.rmtree(parts, ignore_errors=True)
    state.wait_for_everyone()
    return _summary(cache, time.time() - started, up_to_date=False)
