"""Lay the finished shards of an extraction out in the HDF5 cache, so that the cache exists whole or not at all.

Steps, in order:
1. Sizes from the shards' metadata (one shard open at a time): the HDF5 arrays are made at their final size.
2. A free-space check: when the cache clearly cannot fit, a StorageError says so before anything is written.
3. The features, written into `<cache>.tmp` by a forked child process. Each shard is read in full and checked
   against its checksum on the way. The child exists because HDF5 cannot recover from a failed write: after a
   "no space left on device" it crashes the process that closes the file (a segmentation fault at close or at
   exit, measured with h5py 3.16 / HDF5 2.0). In a child, that failure stays there: the parent removes the
   partial file, keeps the shards and reports one line.
4. `<cache>.tmp` is read back in full against its checksums, then renamed to the cache.
"""

from __future__ import annotations

import json
import os
import signal
import traceback
from pathlib import Path

import numpy as np

from spp_scl.cache.layout import CacheWriter, publish, temporary_path
from spp_scl.cache.view_layout import ViewWriter
from spp_scl.core.errors import StorageError
from spp_scl.core.storage import disk_full, free_bytes, is_disk_full, remove_quietly, require_free_space
from spp_scl.extract.shards import ShardDamaged, read_shard, shard_path
from spp_scl.extract.view_assembly import ShardViews, view_sizes

FEATURES = ("image_maps", "first_token", "token_states")


def _layout(files: list[Path], dataset) -> tuple[dict, tuple, list, list[dict]]:
    """(records and tokens per split, image map shape, per shard (record indices, text lengths), skip list)."""
    skipped = [s.as_dict() for s in dataset.skipped]
    sizes, map_shape, kept = {}, None, []
    for path in files:
        arrays, meta, shapes = read_shard(path, names=("text_lengths",))
        if not set(FEATURES) <= shapes.keys():
            raise ShardDamaged(f"shard {path} lacks some of the tensors {list(FEATURES)}")
        if shapes["image_maps"][0]:
            map_shape = map_shape or shapes["image_maps"][1:]
        indices, lengths = json.loads(meta["records"]), arrays["text_lengths"]
        if len(indices) != len(lengths) or any(not 0 <= i < len(dataset.records) for i in indices):
            raise ShardDamaged(f"shard {path}: its record list does not fit this dataset")
        kept.append((indices, lengths))
        for index, length in zip(indices, lengths):
            records, tokens = sizes.get(dataset.records[index].split, (0, 0))
            sizes[dataset.records[index].split] = (records + 1, tokens + int(length))
        for item in json.loads(meta["skipped"]):
            record = dataset.records[item["index"]]
            skipped.append({"split": record.split, "id": record.id, "source": record.source, "reason": item["reason"]})
    return sizes, map_shape or (1, 1, 1), kept, skipped


def _write(writer: CacheWriter, files: list[Path], kept: list, dataset, skipped: list[dict], views=None) -> None:
    """`views`: the ViewWriter of a cache with views (extract/view_assembly.py), else None."""
    for path, (indices, lengths) in zip(files, kept):
        arrays, _, _ = read_shard(path)  # every tensor, checked against the shard's checksum
        shard_views = ShardViews(views, arrays) if views is not None else None
        maps, first, tokens = (arrays[name] for name in FEATURES)
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
            if shard_views is not None:
                shard_views.append(split, end - start)
            start = end
    if views is not None:
        views.close()
    writer.close(skipped)


# HDF5 reports a failed write inside its own error text (often as a RuntimeError, not an OSError).
DISK_FULL_TEXT = ("errno = 28,", "errno = 122,", "No space left on device", "Disk quota exceeded")


def _outcome(error: BaseException) -> dict:
    if isinstance(error, ShardDamaged):
        return {"kind": "shard", "message": str(error)}
    if is_disk_full(error) or any(text in str(error) for text in DISK_FULL_TEXT):
        return {"kind": "disk full", "message": str(error)}
    return {"kind": "error", "message": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}


def _in_child(work) -> dict:
    """Run `work()` in a forked child; its outcome comes back through a pipe. The child leaves with os._exit,
    so HDF5's exit handlers never run there after a failed write. Without fork, `work` runs here."""
    if not hasattr(os, "fork"):
        try:
            work()
            return {"kind": "ok"}
        except Exception as error:
            return _outcome(error)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C stops the child too; the parent cleans up
            # After a failed write h5py prints a traceback for every object it can no longer close; the outcome
            # (with the traceback that matters) goes to the parent instead.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            try:
                work()
                outcome = {"kind": "ok"}
            except BaseException as error:
                outcome = _outcome(error)
            data = json.dumps(outcome).encode()
            while data:
                data = data[os.write(write_end, data) :]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    try:
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
    except BaseException:  # Ctrl-C here: the child stops too, and the caller removes its partial file
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        return {"kind": "died", "message": f"the writer process died with signal {os.WTERMSIG(status)}"}
    return {"kind": "died", "message": f"the writer process exited with status {os.waitstatus_to_exitcode(status)}"}


def assemble(
    cache: Path,
    parts: Path,
    shard_count: int,
    dataset,
    attrs: dict,
    layers_dim: tuple[int, int],
    views=None,
) -> list[dict]:
    """Write the cache from the shards in `parts`; returns the full skip list. A shard that cannot be used is
    deleted and named (a rerun extracts it again); a full disk leaves no partial file and keeps every shard."""
    files = [shard_path(parts, i) for i in range(shard_count)]
    tmp = temporary_path(cache)
    try:
        sizes, map_shape, kept, skipped = _layout(files, dataset)
        if views is not None:  # the ViewPlan of an extraction with --views
            splits, text_views = set(attrs["views"]["splits"]), attrs["views"]["text_views"]
            sizes_of_views = view_sizes(files, dataset, splits, text_views, set(sizes))
    except ShardDamaged as damaged:
        raise _forget_shard(damaged, files) from None
    remove_quietly(tmp)  # left by an earlier run that was stopped while writing
    kept_note = f"finished shards are kept in {parts}"
    # The cache holds the shards' features plus ids, offsets and HDF5's own bookkeeping (well under 1%).
    needed = int(sum(path.stat().st_size for path in files) * 1.01) + 2**20
    require_free_space(tmp, needed, kept=kept_note)
    attrs = {**attrs, "image_map_shape": list(map_shape)}

    def work():
        writer = CacheWriter(cache, attrs, sizes, map_shape, layers_dim, attrs["dtype"])
        view_writer = None
        if views is not None:
            view_writer = ViewWriter(
                writer.file, sizes_of_views, attrs["views"], map_shape, layers_dim[1], attrs["dtype"]
            )
        _write(writer, files, kept, dataset, skipped, view_writer)

    try:
        outcome = _in_child(work)
    except BaseException:
        remove_quietly(tmp)
        raise
    if outcome["kind"] != "ok":
        remove_quietly(tmp)
        free = free_bytes(tmp)
        if outcome["kind"] == "disk full" or (outcome["kind"] == "died" and free is not None and free < 2**20):
            raise disk_full(tmp, needed, kept=kept_note)
        if outcome["kind"] == "shard":
            raise _forget_shard(ShardDamaged(outcome["message"]), files)
        raise RuntimeError(f"writing {tmp} failed: {outcome['message']}\n{outcome.get('trace', '')}".rstrip())
    try:
        publish(tmp, cache)
    except OSError as error:
        remove_quietly(tmp)
        if is_disk_full(error):
            raise disk_full(cache, needed, kept=kept_note) from None
        raise StorageError(f"cannot move {tmp} to {cache}: {error.strerror or error}") from None
    return skipped


def _forget_shard(damaged: ShardDamaged, files: list[Path]) -> ShardDamaged:
    """Delete the shard an error names, so that the next run extracts it again."""
    for path in files:
        if str(path) in str(damaged):
            remove_quietly(path)
            return ShardDamaged(f"{damaged}; it was deleted: rerun to extract it again")
    return damaged
