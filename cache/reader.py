"""The cache reader for training: batches of one split, token states padded to the batch's longest text.

A split is held in memory when it fits (see `memory_budget`), else read from disk per batch; the layout
(`cache/layout.py`) keeps one record's image map in one chunk and its tokens in one or two, so a random
batch reads few chunks. Features stay in their stored float16 in memory (half the memory of float32, and a
batch gathers half the bytes) and become float32 per batch.

Memory layouts, chosen for the heads' matrix products (the shapes are the same as always):
- image maps are held channels-last, [N, h, w, C]: a batch's `image_maps` is [B, C, h, w] with channels-last
  strides, so [B * h * w, C] (the 1x1 convolution's GEMM operand, and the token-level heads' image tokens)
  is a view, not a transposing copy;
- a batch's `token_states` is [B, K, L, D] stored as [B, L, K, D]: each token's K layers are adjacent, as in
  the cache, so a batch is filled by plain copies and a token's layers are gathered in one read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from spp_scl.cache.checksums import CheckedDataset, check_small_datasets, damage_as_error, damaged
from spp_scl.cache.layout import is_verifiable, open_cache, read_attrs
from spp_scl.cache.shared_split import shared_arrays
from spp_scl.core.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class FeatureBatch:
    image_maps: torch.Tensor  # [B, C, h, w] (channels-last in memory)
    first_token: torch.Tensor  # [B, K, D]
    token_states: torch.Tensor  # [B, K, L, D], zero past each text's length (stored [B, L, K, D])
    token_mask: torch.Tensor  # [B, L] bool, True on real tokens
    labels: torch.Tensor  # [B] long
    ids: list[str]

    def to(self, device) -> FeatureBatch:
        return FeatureBatch(
            *(
                t.to(device, non_blocking=True)
                for t in (self.image_maps, self.first_token, self.token_states, self.token_mask, self.labels)
            ),
            self.ids,
        )

    def __len__(self) -> int:
        return len(self.ids)


def memory_budget() -> int:
    """Half of the memory available now: what a split may take to be held in memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") // 2


FEATURE_ARRAYS = ("image_maps", "first_token", "token_states")


def feature_bytes(group: h5py.Group) -> int:
    """What a split's features take held in memory (a CachedSplit holds them when this fits its budget)."""
    missing = [name for name in FEATURE_ARRAYS if name not in group]
    if missing:
        raise InputError(f"{group.file.filename}: split {group.name.strip('/')} has no {', '.join(missing)}")
    return sum(group[name].size * group[name].dtype.itemsize for name in FEATURE_ARRAYS)


def fits_in_memory(path: str | Path, split: str = "train", processes: int = 1, budget: int | None = None) -> bool:
    """Whether `processes` processes can each hold the split in memory within `budget` (default
    `memory_budget()`): a prediction of what their CachedSplit(in_memory=None) will decide."""
    with open_cache(path) as file, damage_as_error(path):
        if split not in file:
            return True
        needed = feature_bytes(file[split]) * max(processes, 1)
    return needed <= (memory_budget() if budget is None else budget)


class CachedSplit:
    """One split of a cache file. `layers`: indices into the cached layers (e.g. [-2, -1] = the last two);
    `in_memory`: True, False, or None to decide by size against `memory_budget()`; `dtype`: of the batches'
    features, None = the cache's own (float16); `token_dtype`: of the token states only, if not `dtype` (None =
    the cache's own). The trainer keeps tokens in float16: a padded batch is half the bytes to fill and move,
    and the heads widen only the tokens they read; image maps are widened once per batch, for both forwards of
    the two-step rule (every head reads them whole). `shared`: a folder of shared copies (cache/shared_split.py);
    when it holds one of this split, its large features are mapped from there and held as in memory."""

    def __init__(
        self,
        path: str | Path,
        split: str,
        layers: list[int] | None = None,
        in_memory: bool | None = None,
        dtype: torch.dtype | None = torch.float32,
        token_dtype: torch.dtype | None | str = "same",
        shared: str | Path | None = None,
    ):
        self.path = Path(path)
        self.split = split
        self.attrs = read_attrs(self.path)
        self.dtype = dtype if dtype is not None else _STORED_DTYPES[self.attrs["dtype"]]
        if token_dtype == "same":
            token_dtype = self.dtype
        self.token_dtype = token_dtype if token_dtype is not None else _STORED_DTYPES[self.attrs["dtype"]]
        self.class_names: list[str] = self.attrs["class_names"]
        self.cached_layers: list[int] = self.attrs["text_layers"]
        positions = list(range(len(self.cached_layers)))
        try:
            self.layer_index = [positions[i] for i in layers] if layers is not None else positions
        except IndexError:
            raise ValueError(f"layers {layers}: the cache holds {len(positions)} layers {self.cached_layers}") from None
        self.layers = [self.cached_layers[i] for i in self.layer_index]
        with damage_as_error(self.path, f"the {split} split"):  # metadata too damaged for h5py: one line
            self._open(split, in_memory, shared)

    def _open(self, split: str, in_memory: bool | None, shared: str | Path | None = None) -> None:
        self._file = open_cache(self.path)
        if split not in self._file:
            available = [name for name in self._file if isinstance(self._file[name], h5py.Group)]
            self._file.close()
            raise InputError(f"{self.path} has no split {split!r}; it has {available}")
        group = self._file[split]
        if is_verifiable(self.attrs):  # format 1 caches have no checksums to check
            check_small_datasets(group, self.path)
        self.ids = list(group["ids"].asstr()[:])
        self.labels = group["labels"][:]
        self.offsets = group["token_offsets"][:]
        self.lengths = group["text_lengths"][:]
        self.map_shape = tuple(group["image_maps"].shape[1:])
        self.text_dim = group["token_states"].shape[2]
        self.nbytes = feature_bytes(group)
        mapped = None
        if shared is not None:
            try:
                mapped = shared_arrays(self.path, split, shared, self.attrs["fingerprint"])
            except (OSError, ValueError) as error:  # a copy removed or cut while opening: do without it
                logger.warning(f"{split}: the shared copy in {shared} could not be mapped ({error})")
        self.shared = mapped is not None
        if mapped is not None:  # one copy on this machine, mapped: held as in memory
            self.in_memory = True
            self._arrays = {**mapped, "first_token": group["first_token"][:]}
            self._file.close()
            return
        budget = memory_budget()
        self.in_memory = self.nbytes <= budget if in_memory is None else in_memory
        if self.in_memory:
            try:  # a chunk that fails its fletcher32 check fails the read
                self._arrays = {
                    "image_maps": _channels_last(group["image_maps"]),
                    "first_token": group["first_token"][:],
                    "token_states": group["token_states"][:],
                }
            except OSError as error:
                raise damaged(self.path, f"the {split} features", error) from None
            finally:
                self._file.close()
        else:
            self._arrays = {name: CheckedDataset(group[name], self.path, f"{split}/{name}") for name in FEATURE_ARRAYS}
            # The first-token vectors are small: hold them even when reading the rest from disk.
            self._arrays["first_token"] = self._arrays["first_token"][:]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batch(self, indices) -> FeatureBatch:
        indices = np.asarray(indices, dtype=np.int64)
        maps = self._arrays["image_maps"]
        if self.in_memory:
            image_maps = maps[indices]
        else:  # h5py reads sorted, unique indices; put them back in the asked order
            unique, inverse = np.unique(indices, return_inverse=True)
            image_maps = np.ascontiguousarray(maps[unique][inverse].transpose(0, 2, 3, 1))
        # Indexing the layer axis copies; skip it when every cached layer is used.
        layer_index = None if self.layer_index == list(range(len(self.cached_layers))) else self.layer_index
        first = self._arrays["first_token"][indices]
        first = first if layer_index is None else first[:, layer_index]
        lengths = self.lengths[indices]
        longest = int(lengths.max()) if len(indices) else 0
        tokens = _host_tensor((len(indices), longest, first.shape[1], self.text_dim), self.token_dtype, zeroed=True)
        states = self._arrays["token_states"]
        # Kept in the stored dtype, a batch is filled by numpy's plain copies; widened, by torch's conversion
        # as each record is copied (only the real tokens, never the padding).
        same_dtype = _NUMPY_DTYPES.get(self.token_dtype) == states.dtype
        fill = tokens.numpy() if same_dtype else tokens
        for row, (index, length) in enumerate(zip(indices, lengths)):
            start = self.offsets[index]
            record = states[start : start + length]
            record = record if layer_index is None else record[:, layer_index]
            if same_dtype:
                fill[row, :length] = record
            else:  # (a shared copy's slices are read-only: torch takes a writable copy of them)
                fill[row, :length].copy_(torch.from_numpy(record if record.flags.writeable else record.copy()))
        mask = np.arange(longest)[None, :] < lengths[:, None]
        return FeatureBatch(
            _converted(image_maps, self.dtype).permute(0, 3, 1, 2),
            _converted(first, self.dtype),
            tokens.permute(0, 2, 1, 3),
            torch.from_numpy(mask),
            torch.from_numpy(self.labels[indices]).long(),
            [self.ids[i] for i in indices],
        )

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        longest_first: bool = False,
        draw=None,
    ):
        """Batches over the split; with `shuffle`, a permutation drawn from `generator`. `longest_first` orders
        the records inside each batch by text length (which records share a batch is unchanged): training
        losses do not depend on the order, and a sorted batch feeds an LSTM without re-sorting. `draw(indices)`
        reads a batch instead of `self.batch` (the trainer's stored views: runs/train/view_feed.py)."""
        order = torch.randperm(len(self), generator=generator).numpy() if shuffle else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            if drop_last and len(chunk) < batch_size:
                return
            if longest_first:
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            yield self.batch(chunk) if draw is None else draw(chunk)

    def views(self, in_memory: bool | None = None):
        """The stored views of this split (cache/views.py), opened on first use and kept; an error when the
        cache has none."""
        if getattr(self, "_views", None) is None:
            from spp_scl.cache.views import SplitViews

            self._views = SplitViews(self, in_memory)
        return self._views

    def close(self) -> None:
        if not self.in_memory:
            self._file.close()


_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}
_STORED_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def _host_tensor(shape: tuple[int, ...], dtype: torch.dtype, zeroed: bool = False) -> torch.Tensor:
    """A new CPU tensor whose memory numpy allocates: numpy asks the kernel for transparent huge pages on large
    allocations, torch's allocator does not, and a batch's tens of megabytes in 4 KiB pages cost tens of
    milliseconds of page faults per batch (more than converting the batch)."""
    if dtype not in _NUMPY_DTYPES:  # bfloat16 has no numpy dtype
        return torch.zeros(shape, dtype=dtype) if zeroed else torch.empty(shape, dtype=dtype)
    allocate = np.zeros if zeroed else np.empty
    return torch.from_numpy(allocate(shape, dtype=_NUMPY_DTYPES[dtype]))


def _converted(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """`array` (a fresh array: a gather's result) as a tensor of `dtype` (torch's vectorised conversion into a
    `_host_tensor`; no copy when it has that dtype already)."""
    if _NUMPY_DTYPES.get(dtype) == array.dtype:
        return torch.from_numpy(np.ascontiguousarray(array))
    out = _host_tensor(array.shape, dtype)
    out.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return out


def _channels_last(maps: h5py.Dataset, records_per_read: int = 256) -> np.ndarray:
    """The [N, C, h, w] maps of a cache split as an in-memory [N, h, w, C] array of the stored dtype, read a few
    hundred records at a time (never a second full copy in memory)."""
    count, channels, height, width = maps.shape
    out = np.empty((count, height, width, channels), dtype=maps.dtype)
    for start in range(0, count, records_per_read):
        out[start : start + records_per_read] = maps[start : start + records_per_read].transpose(0, 2, 3, 1)
    return out


def cache_summary(path: str | Path) -> dict:
    """Counts per split and label, shapes, dtype and sizes: what `spp-scl inspect` prints."""
    path = Path(path)
    attrs = read_attrs(path)
    summary = {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "format_version": int(attrs["format_version"]),
        "dataset": attrs["dataset"],
        "class_names": attrs["class_names"],
        "text_layers": attrs["text_layers"],
        "dtype": attrs["dtype"],
        "splits": {},
    }
    with open_cache(path) as file, damage_as_error(path):
        for split in ("train", "dev", "test"):
            if split not in file:
                continue
            group = file[split]
            labels = group["labels"][:]
            lengths = group["text_lengths"][:]
            states = group["token_states"]
            summary["splits"][split] = {
                "records": len(labels),
                "labels": {name: int((labels == i).sum()) for i, name in enumerate(attrs["class_names"])},
                "image_map": list(group["image_maps"].shape[1:]),
                "first_token": list(group["first_token"].shape[1:]),
                "tokens": {
                    "total": int(states.shape[0]),
                    "mean": float(lengths.mean()) if len(lengths) else 0.0,
                    "max": int(lengths.max()) if len(lengths) else 0,
                },
                "feature_bytes": int(
                    sum(group[n].size * group[n].dtype.itemsize for n in ("image_maps", "first_token", "token_states"))
                ),
            }
    records = sum(s["records"] for s in summary["splits"].values())
    features = sum(s["feature_bytes"] for s in summary["splits"].values())
    summary["bytes_per_record"] = summary["file_bytes"] / max(records, 1)
    summary["overhead"] = summary["file_bytes"] / max(features, 1)
    summary["fingerprint"] = attrs["fingerprint"]
    return summary
