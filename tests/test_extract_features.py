"""The cached features are what the encoders give each record alone: shapes, dtype, text and image fidelity."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoTokenizer

from spp_scl.extract.images import Preprocess, to_pixels
from spp_scl.extract.pipeline import run
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "cache.h5"
    summary = run(tiny_config(tiny, out))
    return out, summary


def _split_records(tiny, split):
    return json.loads((Path(tiny["data"]) / f"{split}.json").read_text())


def test_shapes_dtype_and_counts(tiny, built):
    out, summary = built
    assert summary.records == {"train": 40, "dev": 12, "test": 12}
    with h5py.File(out, "r") as file:
        assert file.attrs["dtype"] == "float16"
        for split, size in summary.records.items():
            group = file[split]
            assert list(group["ids"].asstr()[:]) == [r["id"] for r in _split_records(tiny, split)]
            assert list(group["labels"][:]) == [r["emotion_label"] for r in _split_records(tiny, split)]
            assert group["image_maps"].shape == (size, 24, 8, 8)  # tiny ResNet: 24 channels, 64 px / 8 (two stages)
            assert group["first_token"].shape == (size, 4, 32)
            assert group["image_maps"].dtype == np.float16 and group["token_states"].dtype == np.float16
            offsets, lengths = group["token_offsets"][:], group["text_lengths"][:]
            assert offsets[0] == 0 and np.array_equal(np.diff(offsets), lengths)
            assert group["token_states"].shape == (offsets[-1], 4, 32)


def test_text_states_equal_a_forward_of_each_text_alone(tiny, built):
    """Batching by length and padding change nothing beyond float16 rounding, for every record."""
    out, _ = built
    tokenizer = AutoTokenizer.from_pretrained(tiny["text"])
    model = AutoModel.from_pretrained(tiny["text"]).eval()
    with h5py.File(out, "r") as file:
        for split in ("train", "dev", "test"):
            group = file[split]
            offsets = group["token_offsets"][:]
            for row, record in enumerate(_split_records(tiny, split)):
                encoded = tokenizer(record["text"], truncation=True, max_length=202, return_tensors="pt")
                with torch.no_grad():
                    hidden = model(**encoded, output_hidden_states=True).hidden_states
                expected = torch.stack([hidden[layer][0] for layer in (1, 2, 3, 4)])  # [K, L, D]
                stored = torch.from_numpy(group["token_states"][offsets[row] : offsets[row + 1]]).float()
                torch.testing.assert_close(stored.transpose(0, 1), expected, atol=2e-3, rtol=2e-3)
                torch.testing.assert_close(
                    torch.from_numpy(group["first_token"][row]).float(), expected[:, 0], atol=2e-3, rtol=2e-3
                )


def _reference_pixels(path, resize, crop, mean, std):
    """An independent reading of 'resize the shorter side, centre-crop, normalise'."""
    image = Image.open(path).convert("RGB")
    scale = resize / min(image.size)
    image = image.resize(
        (
            int(image.width * scale) if image.width > image.height else resize,
            int(image.height * scale) if image.height > image.width else resize,
        ),
        Image.BILINEAR,
    )
    array = np.asarray(image, dtype=np.float32) / 255.0
    top, left = round((array.shape[0] - crop) / 2), round((array.shape[1] - crop) / 2)
    array = array[top : top + crop, left : left + crop]
    return torch.from_numpy(((array - np.array(mean)) / np.array(std)).transpose(2, 0, 1).astype(np.float32))


def test_image_maps_equal_a_direct_forward(tiny, built):
    out, _ = built
    model = AutoModel.from_pretrained(tiny["image"]).eval()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    with h5py.File(out, "r") as file:
        for split in ("dev", "test"):
            for row, record in enumerate(_split_records(tiny, split)):
                pixels = _reference_pixels(Path(tiny["data"]) / "images" / f"{record['id']}.jpg", 73, 64, mean, std)
                with torch.no_grad():
                    expected = model(pixel_values=pixels[None]).last_hidden_state[0]
                stored = torch.from_numpy(file[split]["image_maps"][row]).float()
                torch.testing.assert_close(stored, expected, atol=2e-3, rtol=2e-3)


def test_preprocess_resizes_shorter_side_and_centre_crops():
    """A 40 x 20 image whose columns count up: after resize 10 (20 x 10) and crop 10, the crop's left edge is
    column 5 of the resized image, and normalisation uses the given mean and std."""
    ramp = np.tile(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (20, 1, 3))
    pixels = to_pixels(Image.fromarray(ramp), Preprocess(10, 10, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    assert pixels.shape == (3, 10, 10)
    resized = np.asarray(Image.fromarray(ramp).resize((20, 10), Image.BILINEAR), dtype=np.float32) / 255
    np.testing.assert_allclose(pixels[0].numpy(), resized[:, 5:15, 0], atol=1e-6)
    shifted = to_pixels(Image.fromarray(ramp), Preprocess(10, 10, (0.5, 0.5, 0.5), (2.0, 2.0, 2.0)))
    np.testing.assert_allclose(shifted.numpy(), (pixels.numpy() - 0.5) / 2.0, atol=1e-6)


def test_reader_pads_masks_and_selects_layers(built):
    from spp_scl.cache.reader import CachedSplit

    out, _ = built
    split = CachedSplit(out, "train")
    disk = CachedSplit(out, "train", in_memory=False)
    last_two = CachedSplit(out, "train", layers=[-2, -1])
    assert split.in_memory and not disk.in_memory
    indices = [5, 0, 17, 5]
    batch = split.batch(indices)
    longest = int(split.lengths[indices].max())
    assert batch.token_states.shape == (4, 4, longest, 32) and batch.token_mask.shape == (4, longest)
    for row, index in enumerate(indices):
        length = split.lengths[index]
        assert batch.token_mask[row].sum() == length
        alone = split.batch([index])
        torch.testing.assert_close(batch.token_states[row, :, :length], alone.token_states[0], rtol=0, atol=0)
        assert torch.count_nonzero(batch.token_states[row, :, length:]) == 0
        assert batch.ids[row] == split.ids[index]
    from_disk = disk.batch(indices)
    for name in ("image_maps", "first_token", "token_states", "token_mask", "labels"):
        assert torch.equal(getattr(batch, name), getattr(from_disk, name)), name
    assert last_two.layers == [3, 4]
    torch.testing.assert_close(last_two.batch(indices).token_states, batch.token_states[:, 2:], rtol=0, atol=0)
    seen = sorted(i for b in split.batches(7, shuffle=True, generator=torch.Generator().manual_seed(0)) for i in b.ids)
    assert seen == sorted(split.ids)
    assert [len(b) for b in split.batches(16, drop_last=True)] == [16, 16]
