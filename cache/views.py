"""Reading the stored views of a split (cache/view_layout.py) into training batches.

`SplitViews(split)` opens the views of a CachedSplit (held in memory when they fit, else read per batch, with
fletcher32 and the small arrays' checksums checked as for the clean arrays). `batch(indices, views, parts)`
gives the same FeatureBatch as `CachedSplit.batch`, with record i's stored view `views[i]` in place of its clean
features for the parts asked ("both", "text" or "image"); a part the cache has no views of stays clean. With
one stored text view (a paraphrase without dropout) every view number serves that one.

Text views may hold fewer layers than the clean cache (`--view-text-layers`): the layers a head reads must be
among them (an error names them otherwise); the head's other layer slots are left zero, since it never reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spp_scl.cache.checksums import CheckedDataset, check_small_datasets, damage_as_error, damaged
from spp_scl.cache.layout import is_verifiable, open_cache, read_attrs
from spp_scl.cache.reader import FeatureBatch, _converted, _host_tensor, memory_budget
from spp_scl.cache.view_layout import VIEW_GROUP
from spp_scl.core.errors import InputError

PARTS = ("both", "text", "image")


class NoViews(InputError):
    """Views were asked of a cache (or split) that has none, or not of the layers a head reads."""


class SplitViews:
    def __init__(self, split, in_memory: bool | None = None):
        self.split = split
        attrs = split.attrs.get("views")
        if not attrs or split.split not in attrs.get("splits", []):
            raise NoViews(
                f"{split.path} has no views of its {split.split} split: extract it with `spp-scl extract --views V` "
                "(or train with --train-views clean)"
            )
        self.count, self.text_views, self.image_views = attrs["count"], attrs["text_views"], attrs["image_views"]
        self.text_layers: list[int] = attrs["text_layers"]
        # For each layer slot the split serves, its position among the view layers (None: not stored in views).
        self.slots = [self.text_layers.index(layer) if layer in self.text_layers else None for layer in split.layers]
        with damage_as_error(split.path, f"the {split.split} views"):  # metadata too damaged for h5py: one line
            self._open(split, in_memory)

    def _open(self, split, in_memory: bool | None) -> None:
        file = open_cache(split.path)
        group = file[split.split][VIEW_GROUP]
        if is_verifiable(split.attrs) and self.text_views:
            check_small_datasets(group, split.path, names=("text_lengths", "token_offsets"))
        self.lengths = group["text_lengths"][:] if self.text_views else None
        self.offsets = group["token_offsets"][:] if self.text_views else None
        names = [name for name in ("image_maps", "token_states") if name in group]
        self.nbytes = sum(group[name].size * group[name].dtype.itemsize for name in names)
        self.in_memory = self.nbytes <= memory_budget() if in_memory is None else in_memory
        self._file = file
        if self.in_memory:
            try:
                self.arrays = {
                    name: _record_views_channels_last(group[name]) if name == "image_maps" else group[name][:]
                    for name in names
                }
            except OSError as error:
                raise damaged(split.path, f"the {split.split} views", error) from None
            finally:
                file.close()
        else:
            self.arrays = {
                name: CheckedDataset(group[name], split.path, f"{split.split}/views/{name}") for name in names
            }

    def check_layers(self, read_slots: list[int]) -> None:
        """Refuse text views that lack a layer the head reads (slots: positions among the split's layers)."""
        missing = [self.split.layers[slot] for slot in read_slots if self.slots[slot] is None]
        if self.text_views and missing:
            raise NoViews(
                f"{self.split.path}: its text views hold layers {self.text_layers}, but the head reads layers "
                f"{missing}: extract the views with those layers (--view-text-layers), or train with "
                "--view-parts image"
            )

    def batch(self, indices, views, parts: str = "both") -> FeatureBatch:
        """The records `indices` with view `views[i]` (numbers in 0..count-1) for the parts asked."""
        if parts not in PARTS:
            raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")
        indices, views = np.asarray(indices, dtype=np.int64), np.asarray(views, dtype=np.int64)
        image_view = parts in ("both", "image") and self.image_views > 0
        text_view = parts in ("both", "text") and self.text_views > 0
        clean = self.split.batch(indices) if not (image_view and text_view) else None  # the parts kept clean
        image_maps = self._image_maps(indices, views) if image_view else clean.image_maps
        if text_view:
            first, tokens, mask = self._text(indices, views if self.text_views > 1 else np.zeros_like(views))
        else:
            first, tokens, mask = clean.first_token, clean.token_states, clean.token_mask
        labels = torch.from_numpy(self.split.labels[indices]).long()
        return FeatureBatch(image_maps, first, tokens, mask, labels, [self.split.ids[i] for i in indices])

    def _image_maps(self, indices, views) -> torch.Tensor:
        maps = self.arrays["image_maps"]
        if self.in_memory:  # [N, Vi, h, w, C]
            chosen = maps[indices, views]
        else:  # [N, Vi, C, h, w] on disk, one chunk per record and view
            chosen = np.stack([maps[int(i), int(v)] for i, v in zip(indices, views)]).transpose(0, 2, 3, 1)
        return _converted(chosen, self.split.dtype).permute(0, 3, 1, 2)

    def _text(self, indices, views):
        """(first token [B, K, D], token states [B, K, L, D] stored [B, L, K, D], mask [B, L]) of the views."""
        states = self.arrays["token_states"]
        lengths = self.lengths[indices]
        longest = int(lengths.max()) if len(indices) else 0
        dim, slots = states.shape[-1], len(self.slots)
        tokens = _host_tensor((len(indices), longest, slots, dim), self.split.dtype, zeroed=True)
        stored = [(slot, view_slot) for slot, view_slot in enumerate(self.slots) if view_slot is not None]
        every_slot = self.slots == list(range(slots)) and states.shape[2] == slots  # the views hold the same layers
        for row, (index, view, length) in enumerate(zip(indices, views, lengths)):
            start = self.offsets[index]
            record = torch.from_numpy(np.asarray(states[start : start + length, view]))  # [L, Kv, D], stored dtype
            if every_slot:
                tokens[row, :length].copy_(record)
            else:
                for slot, view_slot in stored:
                    tokens[row, :length, slot].copy_(record[:, view_slot])
        mask = np.arange(longest)[None, :] < lengths[:, None]
        first = tokens[:, 0].clone()  # a view's first-token vector is its first token row
        return first, tokens.permute(0, 2, 1, 3), torch.from_numpy(mask)

    def close(self) -> None:
        if not self.in_memory:
            self._file.close()


def _record_views_channels_last(maps, records_per_read: int = 64) -> np.ndarray:
    """[N, Vi, C, h, w] on disk -> [N, Vi, h, w, C] in memory, a few records at a time."""
    count, views, channels, height, width = maps.shape
    out = np.empty((count, views, height, width, channels), dtype=maps.dtype)
    for start in range(0, count, records_per_read):
        out[start : start + records_per_read] = maps[start : start + records_per_read].transpose(0, 1, 3, 4, 2)
    return out


def views_summary(path: str | Path) -> dict | None:
    """What `spp-scl inspect` says about a cache's views: counts, kinds, layers and bytes per split; None without."""
    attrs = read_attrs(Path(path))
    stored = attrs.get("views")
    if not stored:
        return None
    described = attrs["fingerprint"].get("views", {})
    summary = {**stored, "kinds": _kinds(described), "bytes": {}}
    with open_cache(Path(path)) as file, damage_as_error(path):
        for split in stored["splits"]:
            if split in file and VIEW_GROUP in file[split]:
                group = file[split][VIEW_GROUP]
                records = len(file[split]["ids"])
                parts = {
                    name: int(group[name].size * group[name].dtype.itemsize)
                    for name in ("image_maps", "token_states")
                    if name in group
                }
                summary["bytes"][split] = {
                    **parts,
                    "per_record_and_view": {
                        name: value / max(records, 1) / max(group[name].shape[1], 1) for name, value in parts.items()
                    },
                }
    return summary


def _kinds(described: dict) -> dict:
    text, image = described.get("text") or {}, described.get("image") or {}
    text_kinds = (["dropout"] if text.get("dropout") else []) + (
        ["paraphrase"] if text.get("paraphrases_sha256") else []
    )
    image_kinds = []
    if image.get("randaugment"):
        r = image["randaugment"]
        image_kinds.append(f"RandAugment {r['ops']} x {r['magnitude']}, flip {r['horizontal_flip']}")
    if image.get("batchnorm_train_mode"):
        image_kinds.append(f"BatchNorm in train mode over batches of {image['batchnorm_train_mode']['batch']}")
    return {"text": text_kinds, "image": image_kinds, "seed": described.get("seed")}


def describe_views(path: str | Path) -> list[str]:
    """Lines for `spp-scl inspect`."""
    summary = views_summary(path)
    if summary is None:
        return ["views: none (clean features only)"]
    kinds = summary["kinds"]
    text = (
        f"text {summary['text_views']} ({' + '.join(kinds['text'])}; layers {summary['text_layers']})"
        if summary["text_views"]
        else "text clean"
    )
    image = f"image {summary['image_views']} ({'; '.join(kinds['image'])})" if summary["image_views"] else "image clean"
    lines = [
        f"views: {summary['count']} per record of {', '.join(summary['splits'])}: {text}, {image}; seed {kinds['seed']}"
    ]
    for split, sizes in summary["bytes"].items():
        per = sizes["per_record_and_view"]
        lines.append(
            f"  {split}: "
            + ", ".join(f"{name} {value / 1024:.1f} KiB per record and view" for name, value in per.items())
        )
    return lines
