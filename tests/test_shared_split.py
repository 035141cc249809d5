"""Shared splits (cache/shared_split.py, runs/trials/split_storage.py): jobs that could not each hold the train split
map one copy of it, and read the batches a split held in memory gives; a copy that does not match the cache is never
taken; the test split is never copied."""

from __future__ import annotations

import json
import os

import pytest
import torch

from spp_scl.cache.reader import CachedSplit
from spp_scl.cache.shared_split import RECORD, share_split, shared_arrays
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.presets import resolve_config


@pytest.fixture
def cache(tmp_path):
    return write_synthetic_cache(
        tmp_path / "cache.h5", {"train": 40, "dev": 12, "test": 12}, layers=3, dim=8, map_shape=(6, 2, 3), seed=2
    )


def _batches(split, size=7):
    return list(split.batches(size, shuffle=True, generator=torch.Generator().manual_seed(3), longest_first=True))


def test_a_shared_split_gives_the_batches_of_a_split_held_in_memory(cache, tmp_path):
    share_split(cache, "train", tmp_path / "shared")
    mapped = CachedSplit(cache, "train", layers=[-2, -1], token_dtype=None, shared=tmp_path / "shared")
    held = CachedSplit(cache, "train", layers=[-2, -1], token_dtype=None, in_memory=True)
    assert mapped.shared and mapped.in_memory and not held.shared
    for ours, theirs in zip(_batches(mapped), _batches(held), strict=True):
        for name in ("image_maps", "first_token", "token_states", "token_mask", "labels"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
            assert getattr(ours, name).stride() == getattr(theirs, name).stride(), name  # channels-last kept
        assert ours.ids == theirs.ids


def test_a_copy_that_does_not_match_the_cache_is_not_taken(cache, tmp_path):
    folder = tmp_path / "shared"
    target = share_split(cache, "train", folder)
    assert shared_arrays(cache, "train", folder) is not None
    assert shared_arrays(cache, "dev", folder) is None  # no copy of dev: the split is held or read as usual
    assert not CachedSplit(cache, "dev", shared=folder).shared
    stat = os.stat(cache)
    os.utime(cache, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # the cache written again since
    assert shared_arrays(cache, "train", folder) is None
    assert not CachedSplit(cache, "train", shared=folder).shared
    share_split(cache, "train", folder)  # written again for the cache as it is now
    assert shared_arrays(cache, "train", folder) is not None
    (target / RECORD).unlink()  # a writer stopped before its record: the copy is never taken
    assert shared_arrays(cache, "train", folder) is None
    record = json.loads(json.dumps({"cache": str(cache.resolve())}))
    (target / RECORD).write_text(json.dumps(record))  # a record of another cache state
    assert shared_arrays(cache, "train", folder) is None


def test_where_the_jobs_find_the_train_split(cache, monkeypatch):
    import spp_scl.cache.reader as reader
    from spp_scl.cache.layout import open_cache
    from spp_scl.cache.reader import feature_bytes
    from spp_scl.runs.trials.split_storage import AUTO_GROUP_SIZE, resolve_group_size, train_split_storage

    with open_cache(cache) as file:
        needed = feature_bytes(file["train"])
    monkeypatch.setattr(reader, "memory_budget", lambda: 2 * needed)
    assert [train_split_storage(cache, jobs) for jobs in (1, 2, 3)] == ["memory", "memory", "shared"]
    messages = []
    assert resolve_group_size(None, cache, jobs=3, log=messages.append) == 1
    assert messages == [
        "group size 1: the train split will be mapped from one copy shared by the jobs (--group-size sets it)"
    ]
    monkeypatch.setattr(reader, "memory_budget", lambda: needed - 1)
    assert [train_split_storage(cache, jobs) for jobs in (1, 2)] == ["file", "file"]
    assert resolve_group_size(None, cache, jobs=2) == AUTO_GROUP_SIZE


def test_jobs_that_share_the_split_give_the_rows_of_jobs_that_hold_it(cache, tmp_path, monkeypatch):
    """Two worker processes map one copy (train and dev, never test, also under k-fold selection), give the rows
    and run folders of two that each hold their own (two, not one: a worker's thread count is the CPU's share,
    and another thread count sums in another order), and the copy is gone at the end."""
    import spp_scl.cache.reader as reader
    import spp_scl.cache.shared_split as shared_split
    from spp_scl.cache.layout import open_cache
    from spp_scl.cache.reader import feature_bytes
    from spp_scl.runs.trials.executor import Trial, run_trials

    base = resolve_config("mvsa-single", epochs=1, batch_size=8, lr=2e-3)
    trials = [Trial("a", {}, 1), Trial("b", {"temperature": 0.2}, 2), Trial("fold", {"selection": "folds"}, 1)]
    held = tmp_path / "held"
    alone = run_trials(cache, base, trials, held / "r.jsonl", held, jobs=2, log=lambda *_: None, progress=False)

    with open_cache(cache) as file:
        needed = feature_bytes(file["train"])
    monkeypatch.setattr(reader, "memory_budget", lambda: needed)  # fits once, not twice: shared
    copied, messages = [], []
    real_share = shared_split.share_split
    monkeypatch.setattr(
        shared_split, "share_split", lambda c, split, f: copied.append(split) or real_share(c, split, f)
    )
    out = tmp_path / "two"
    (out / ".shared-splits" / "999999999" / "train").mkdir(parents=True)  # left by a run killed before its end
    rows = run_trials(cache, base, trials, out / "r.jsonl", out, jobs=2, log=messages.append, progress=False)
    assert copied == ["train", "dev"]
    assert any("share one copy of the train and dev splits" in message for message in messages)
    assert not (out / ".shared-splits").exists()
    strip = lambda row: {k: v for k, v in row.items() if k not in ("seconds", "seconds_per_epoch", "run_dir")}  # noqa: E731
    assert [strip(row) for row in rows] == [strip(row) for row in alone]
    for row in rows:
        assert (out / row["key"] / "predictions.csv").read_bytes() == (
            held / row["key"] / "predictions.csv"
        ).read_bytes()


def test_the_workers_read_the_shared_copy(cache, tmp_path, monkeypatch):
    """The copy, not the cache file, is what the workers read: with its image maps zeroed after writing, their
    predictions are another model's."""
    import numpy as np

    import spp_scl.cache.reader as reader
    import spp_scl.cache.shared_split as shared_split
    from spp_scl.cache.layout import open_cache
    from spp_scl.cache.reader import feature_bytes
    from spp_scl.runs.trials.executor import Trial, run_trials

    base = resolve_config("mvsa-single", epochs=1, batch_size=8, lr=2e-3)
    trials = [Trial("a", {}, 1), Trial("b", {}, 2)]
    held = tmp_path / "held"
    run_trials(cache, base, trials, held / "r.jsonl", held, jobs=2, log=lambda *_: None, progress=False)
    with open_cache(cache) as file:
        needed = feature_bytes(file["train"])
    monkeypatch.setattr(reader, "memory_budget", lambda: needed)
    real_share = shared_split.share_split

    def share_zeroed(cache, split, folder):
        target = real_share(cache, split, folder)
        maps = np.load(target / "image_maps.npy", mmap_mode="r+")
        maps[:] = 0
        maps.flush()
        return target

    monkeypatch.setattr(shared_split, "share_split", share_zeroed)
    out = tmp_path / "zeroed"
    rows = run_trials(cache, base, trials, out / "r.jsonl", out, jobs=2, log=lambda *_: None, progress=False)
    for row in rows:
        assert (out / row["key"] / "predictions.csv").read_bytes() != (
            held / row["key"] / "predictions.csv"
        ).read_bytes()
