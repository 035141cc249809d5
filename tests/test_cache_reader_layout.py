"""The cache reader keeps the stored float16 in memory and gives float32 batches equal to the file's values, in the
layouts the heads' matrix products read without copying (channels-last maps, tokens with their layers adjacent);
the heads compute the same from batches kept in float16."""

import h5py
import numpy as np
import pytest
import torch

from spp_scl.cache.reader import CachedSplit
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.head_kinds import build_head_model
from spp_scl.heads.presets import resolve_config


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "small.h5"
    return write_synthetic_cache(path, {"train": 23, "dev": 5}, layers=3, dim=16, map_shape=(12, 3, 2), mean_tokens=6)


@pytest.mark.parametrize("in_memory", [True, False])
def test_batch_values_equal_the_files_and_memory_stays_float16(cache, in_memory):
    split = CachedSplit(cache, "train", in_memory=in_memory)
    indices = [7, 0, 22, 7, 3]
    batch = split.batch(indices)
    with h5py.File(cache, "r") as file:
        group = file["train"]
        maps, offsets, lengths = group["image_maps"][:], group["token_offsets"][:], group["text_lengths"][:]
        states, first = group["token_states"][:], group["first_token"][:]
    assert maps.dtype == np.float16
    if in_memory:
        assert all(array.dtype == np.float16 for array in split._arrays.values())
    assert batch.image_maps.dtype == torch.float32 and batch.image_maps.shape == (5, 12, 3, 2)
    assert batch.image_maps.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch.image_maps, torch.from_numpy(maps[indices]).float())
    assert torch.equal(batch.first_token, torch.from_numpy(first[indices]).float())
    longest = int(lengths[indices].max())
    assert batch.token_states.shape == (5, 3, longest, 16)
    # [B, K, L, D] stored as [B, L, K, D]: one token's layers are adjacent, so [B * L, K, D] is a view.
    assert batch.token_states.transpose(1, 2).is_contiguous()
    for row, index in enumerate(indices):
        length = int(lengths[index])
        record = torch.from_numpy(states[offsets[index] : offsets[index] + length]).float()  # [length, K, D]
        assert torch.equal(batch.token_states[row, :, :length], record.transpose(0, 1))
        assert torch.count_nonzero(batch.token_states[row, :, length:]) == 0
        assert batch.token_mask[row].sum() == length


@pytest.mark.parametrize(
    "overrides",
    [{}, {"fusion": "cmf-batch"}, {"modality": "text"}, {"modality": "image"}, {"head": "clmlf"}, {"head": "mdse"}],
)
def test_heads_compute_the_same_from_a_float16_batch_as_from_float32(cache, overrides):
    """The trainer keeps batches in the cache's float16 (the heads widen what they read): outputs, in train mode
    (same dropout masks) and in eval mode, are bit-identical to those from the float32 batch."""
    config = resolve_config(model_dim=16, feedforward_dim=32, **overrides)
    wide, narrow = (CachedSplit(cache, "train", dtype=dtype) for dtype in (torch.float32, None))
    assert narrow.dtype == torch.float16
    indices = [4, 9, 0, 17, 11, 2]
    torch.manual_seed(0)
    model = build_head_model(config, 12, 16, 3, 3)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        outputs = []
        for split in (wide, narrow):
            batch = split.batch(indices)
            torch.manual_seed(1)
            outputs.append(model(batch.image_maps, batch.first_token, batch.token_states, batch.token_mask))
        assert torch.equal(outputs[0]["logits"], outputs[1]["logits"]), mode
