"""k-fold selection: stratified folds over train+dev that are disjoint and cover every record, pooled batches that
hold exactly the cached records, and training that never reads the test split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spp_scl.cache.folds import PooledSplit, fold_members
from spp_scl.cache.reader import CachedSplit
from spp_scl.core.errors import InputError
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import open_splits, train

SIZES = {"train": 40, "dev": 17, "test": 12}


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(SIZES, layers=2, dim=8, map_shape=(4, 2, 2), mean_tokens=5, signal=0.6, seed=7)


def test_folds_are_stratified_disjoint_and_cover_train_and_dev():
    labels = {"train": np.array([0] * 20 + [1] * 12 + [2] * 8), "dev": np.array([0] * 5 + [1] * 3 + [2] * 2)}
    pooled = [(split, index) for split in ("train", "dev") for index in range(len(labels[split]))]
    held_out = []
    for fold in range(5):
        members = fold_members(labels, 5, fold)
        assert sorted(members["train"] + members["dev"]) == sorted(pooled)  # each fold: all of train+dev, once
        assert not set(members["train"]) & set(members["dev"])
        counts = np.bincount([labels[split][index] for split, index in members["dev"]], minlength=3)
        assert counts.tolist() == [5, 3, 2]  # 25, 15 and 10 records per class: a fifth of each
        held_out += members["dev"]
    assert sorted(held_out) == sorted(pooled)  # every record is held out exactly once


def test_more_folds_than_the_rarest_class_has_records_is_one_line():
    labels = {"train": np.array([0, 0, 0, 1]), "dev": np.array([0, 1])}
    with pytest.raises(InputError) as error:
        fold_members(labels, 3, 0)
    assert str(error.value) == "3 folds need 2 or more, and at most the records of the rarest class in train+dev (2)"


def test_a_pooled_batch_holds_exactly_the_records_of_its_sources(cache):
    sources = {split: CachedSplit(cache, split, token_dtype=None) for split in ("train", "dev")}
    members = [("dev", 3), ("train", 0), ("dev", 16), ("train", 39), ("train", 7)]
    pooled = PooledSplit(sources, members, "dev")
    batch = pooled.batch([4, 0, 2, 1])
    assert batch.ids == [sources[s].ids[i] for s, i in (members[4], members[0], members[2], members[1])]
    assert batch.token_states.dtype == sources["train"].batch([0]).token_states.dtype
    for row, (split, index) in enumerate((members[4], members[0], members[2], members[1])):
        alone = sources[split].batch([index])
        length = int(alone.token_mask.sum())
        assert torch.equal(batch.image_maps[row], alone.image_maps[0])
        assert torch.equal(batch.first_token[row], alone.first_token[0])
        assert torch.equal(batch.token_states[row, :, :length], alone.token_states[0, :, :length])
        assert not batch.token_states[row, :, length:].any() and int(batch.token_mask[row].sum()) == length
        assert batch.labels[row] == alone.labels[0]
    one_source = pooled.batch([1, 3])  # records of one split: that split's own batch
    reference = sources["train"].batch([0, 39])
    assert torch.equal(one_source.token_states, reference.token_states) and one_source.ids == reference.ids


def test_training_under_fold_selection_never_reads_the_test_split(cache, tmp_path, monkeypatch):
    read = set()
    original = CachedSplit.batch

    def recording(self, indices):
        read.add(self.split)
        return original(self, indices)

    monkeypatch.setattr(CachedSplit, "batch", recording)
    config = resolve_config("mvsa-single", epochs=2, batch_size=8, selection="folds", folds=3, fold=1)
    result = train(cache, config, tmp_path / "run", log=lambda *_: None)
    assert read == {"train", "dev"}  # the held-out part is drawn from both; test is never read
    assert "test" not in result.metrics
    held_out = fold_members({s: CachedSplit(cache, s).labels for s in ("train", "dev")}, 3, 1)["dev"]
    assert result.metrics["dev"]["records"] == len(held_out) == 19  # a third of the 57 records of train+dev
    assert set(open_splits(cache, config)) == {"train", "dev"}


def test_the_trials_of_a_table_under_fold_selection_never_open_the_test_split(cache, monkeypatch):
    """The splits a process opens once for all its trials (tables, compare, sweeps): under k-fold selection the
    test split is not even opened (nor held in memory), while a dev-selected trial of the same process gets it."""
    from spp_scl.runs.trials.executor import OpenedSplits

    opened = []
    original = CachedSplit.__init__

    def recording(self, path, split, *args, **kwargs):
        opened.append(split)
        original(self, path, split, *args, **kwargs)

    monkeypatch.setattr(CachedSplit, "__init__", recording)
    splits = OpenedSplits(cache)
    folds = resolve_config("mvsa-single", selection="folds", folds=3, fold=1)
    assert set(splits.for_config(folds)) == {"train", "dev"} and "test" not in opened
    assert set(splits.for_config(folds.replace(fold=2))) == {"train", "dev"} and "test" not in opened
    assert "test" in splits.for_config(resolve_config("mvsa-single"))
