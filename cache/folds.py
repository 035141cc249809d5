"""k-fold selection without a test split: stratified folds over a cache's train and dev records together.

With 448 dev posts, the differences between variants tuned on dev are within dev's noise, and choosing among many
of them selects that noise. k folds over train+dev give every record a turn in a held-out part, so a variant is
judged on all of them; the test split is never opened (`fold_splits` returns no "test").

Fold f of k: the records of the f-th part (StratifiedKFold: each part keeps the classes' proportions) are the
held-out split, called "dev" so that the trainer selects on it as usual; the other k - 1 parts are "train". The
parts are drawn once per cache by FOLD_SEED, not by the trial's seed: every variant and seed sees the same folds,
so results pair fold by fold.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from spp_scl.cache.reader import CachedSplit, FeatureBatch, _host_tensor
from spp_scl.core.errors import InputError

FOLD_SEED = 0
POOLED = ("train", "dev")  # the splits the folds are drawn from; test is never among them


def fold_members(labels: dict[str, np.ndarray], folds: int, fold: int) -> dict[str, list[tuple[str, int]]]:
    """{"train": [(split, index), ...], "dev": [...]} for fold `fold` of `folds` over the records of `labels`'
    splits, in the order of POOLED then the index."""
    pooled = [(split, index) for split in POOLED for index in range(len(labels[split]))]
    classes = np.concatenate([labels[split] for split in POOLED])
    counts = np.bincount(classes) if len(classes) else np.zeros(1, dtype=int)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if not 2 <= folds <= smallest:
        raise InputError(
            f"{folds} folds need 2 or more, and at most the records of the rarest class in train+dev ({smallest})"
        )
    if not 0 <= fold < folds:
        raise InputError(f"fold {fold} of {folds}: folds are numbered 0 to {folds - 1}")
    parts = StratifiedKFold(folds, shuffle=True, random_state=FOLD_SEED).split(np.zeros(len(classes)), classes)
    kept, held_out = list(parts)[fold]
    return {"train": [pooled[i] for i in sorted(kept)], "dev": [pooled[i] for i in sorted(held_out)]}


class PooledSplit:
    """Chosen records of several splits of one cache, read as one split: what CachedSplit offers the trainer
    (ids, labels, lengths, shapes, `batch`, `batches`). A batch of records of one source split is that split's
    own batch; a mixed batch is its parts' batches joined, the tokens padded to the longest text."""

    batches = CachedSplit.batches  # the same shuffling, batching and ordering over this split's records

    def __init__(self, sources: dict[str, CachedSplit], members: list[tuple[str, int]], name: str) -> None:
        first = next(iter(sources.values()))
        self.sources, self.split, self.path = sources, name, first.path
        self.members = members
        for attribute in ("attrs", "class_names", "cached_layers", "layers", "layer_index", "map_shape", "text_dim"):
            setattr(self, attribute, getattr(first, attribute))
        self.in_memory = all(source.in_memory for source in sources.values())
        self.ids = [sources[split].ids[index] for split, index in members]
        self.labels = np.array([sources[split].labels[index] for split, index in members], dtype=first.labels.dtype)
        self.lengths = np.array([sources[split].lengths[index] for split, index in members], dtype=first.lengths.dtype)
        self.nbytes = sum(source.nbytes for source in sources.values())

    def __len__(self) -> int:
        return len(self.members)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batch(self, indices) -> FeatureBatch:
        chosen = [self.members[i] for i in np.asarray(indices, dtype=np.int64)]
        by_split: dict[str, list[int]] = {}
        for position, (split, _) in enumerate(chosen):
            by_split.setdefault(split, []).append(position)
        if len(by_split) == 1:
            split = next(iter(by_split))
            return self.sources[split].batch([index for _, index in chosen])
        parts = [(positions, self.sources[split].batch([chosen[p][1] for p in positions]))
                 for split, positions in by_split.items()]  # fmt: skip
        return _joined(parts, len(chosen))

    def views(self, in_memory: bool | None = None):
        raise InputError("stored views (train_views epoch or forward) are not read under k-fold selection")

    def close(self) -> None:
        for source in self.sources.values():
            source.close()


def _joined(parts: list[tuple[list[int], FeatureBatch]], size: int) -> FeatureBatch:
    """One batch of `size` records from parts that each hold the records at their positions; tokens are kept in
    the stored [B, L, K, D] order and maps channels-last, as CachedSplit.batch gives them."""
    longest = max(batch.token_mask.shape[1] for _, batch in parts)
    sample = parts[0][1]
    layers, dim = sample.token_states.shape[1], sample.token_states.shape[3]
    tokens = _host_tensor((size, longest, layers, dim), sample.token_states.dtype, zeroed=True)
    mask = torch.zeros(size, longest, dtype=torch.bool)
    maps = torch.empty((size, *sample.image_maps.permute(0, 2, 3, 1).shape[1:]), dtype=sample.image_maps.dtype)
    first = torch.empty((size, *sample.first_token.shape[1:]), dtype=sample.first_token.dtype)
    labels = torch.empty(size, dtype=sample.labels.dtype)
    ids = [""] * size
    for positions, batch in parts:
        at = torch.tensor(positions)
        length = batch.token_mask.shape[1]
        tokens[at, :length] = batch.token_states.permute(0, 2, 1, 3)
        mask[at, :length] = batch.token_mask
        maps[at] = batch.image_maps.permute(0, 2, 3, 1)
        first[at], labels[at] = batch.first_token, batch.labels
        for position, record in zip(positions, batch.ids):
            ids[position] = record
    return FeatureBatch(maps.permute(0, 3, 1, 2), first, tokens.permute(0, 2, 1, 3), mask, labels, ids)


def fold_splits(sources: dict[str, CachedSplit], folds: int, fold: int) -> dict[str, PooledSplit]:
    """{"train", "dev"} of fold `fold` of `folds`, from the cache's opened train and dev splits."""
    missing = [split for split in POOLED if split not in sources]
    if missing:
        raise InputError(f"k-fold selection pools train and dev; the cache has no {' or '.join(missing)} split")
    members = fold_members({split: sources[split].labels for split in POOLED}, folds, fold)
    pooled = {split: sources[split] for split in POOLED}
    return {name: PooledSplit(pooled, chosen, name) for name, chosen in members.items()}
