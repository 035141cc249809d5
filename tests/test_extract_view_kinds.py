"""The pieces views are made of: CLMLF's RandAugment operations in Pillow against plain array computations, and
per-record dropout (a text's view is the same alone or in any batch; randomness it cannot see is refused)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoTokenizer

from spp_scl.extract.randaugment import OPERATIONS, RandAugment, apply_operation
from spp_scl.extract.record_dropout import (
    RecordDropout,
    UncontrolledRandomness,
    check_no_global_draws,
    global_random_state,
)
from spp_scl.extract.view_streams import numpy_stream, torch_stream, view_seed

OP = {op.name: op for op in OPERATIONS}


def _image(seed=0, size=(40, 40)) -> tuple[Image.Image, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels), pixels.astype(np.int64)


def _signed(name: str, seed: int = 0) -> tuple[np.random.Generator, int]:
    """A stream and the sign the operation will draw from it (its first draw)."""
    sign = -1 if np.random.default_rng(seed).random() < 0.5 else 1
    return np.random.default_rng(seed), sign


def test_colour_operations_equal_their_array_definitions():
    image, x = _image()
    rng = np.random.default_rng(0)
    assert np.array_equal(np.asarray(apply_operation(image, OP["Invert"], 0, rng)), 255 - x)
    solarized = np.asarray(apply_operation(image, OP["Solarize"], 119.5, rng))
    assert np.array_equal(solarized, np.where(x >= 119.5, 255 - x, x))
    added = np.minimum(x + 51, 255)  # 51.33 added, floored, clipped
    assert np.array_equal(
        np.asarray(apply_operation(image, OP["SolarizeAdd"], 51.33, rng)), np.where(added >= 128, 255 - added, added)
    )
    posterized = np.asarray(apply_operation(image, OP["Posterize"], 1.87, rng))  # int(1.87) = 1 bit kept
    assert np.array_equal(posterized, x & 0b10000000)
    half = np.asarray(apply_operation(image, OP["Brightness"], 0.5, rng)).astype(np.int64)
    assert np.abs(half - x * 0.5).max() <= 1


def test_geometric_operations_move_pixels_by_their_value_with_a_random_sign():
    image, x = _image(1)
    for seed in range(4):  # both signs occur over these seeds
        rng, sign = _signed("TranslateXabs", seed)
        moved = np.asarray(apply_operation(image, OP["TranslateXabs"], 5.0, rng)).astype(np.int64)
        if sign > 0:  # output x takes input x + 5; uncovered pixels black
            assert np.array_equal(moved[:, :-5], x[:, 5:]) and not moved[:, -5:].any()
        else:
            assert np.array_equal(moved[:, 5:], x[:, :-5]) and not moved[:, :5].any()
        rng, sign = _signed("Rotate", seed)
        turned = np.asarray(apply_operation(image, OP["Rotate"], 90.0, rng)).astype(np.int64)
        assert np.array_equal(turned, np.rot90(x, 1 if sign > 0 else -1))  # counter-clockwise for +90
    assert {_signed("x", seed)[1] for seed in range(4)} == {-1, 1}


def test_cutout_fills_one_box_of_the_side_and_leaves_the_rest():
    image, x = _image(2, (60, 50))
    out = np.asarray(apply_operation(image, OP["CutoutAbs"], 18.67, np.random.default_rng(3))).astype(np.int64)
    changed = (out != x).any(axis=2)
    rows, cols = np.nonzero(changed)
    assert (out[changed] == (125, 123, 114)).all()
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20 and changed.sum() >= 50


def test_randaugment_draws_ops_uniformly_with_replacement_and_flips_half_the_time():
    augment = RandAugment(2, 14, 0.5)
    chosen, repeats, flips = Counter(), 0, 0
    for view in range(1600):
        rng = numpy_stream(0, "image-augment", "train", "7", view)
        picks = rng.integers(0, len(OPERATIONS), size=2)
        chosen.update(picks.tolist())
        repeats += picks[0] == picks[1]
        flips += augment.flips(rng)
    assert len(chosen) == 16 and max(chosen.values()) < 2 * min(chosen.values())
    assert 50 < repeats < 160  # 1600 / 16 = 100 pairs repeat an operation
    assert 720 < flips < 880


def test_randaugment_is_a_function_of_its_stream():
    image, _ = _image(4, (80, 60))
    augment = RandAugment(2, 14)
    outputs = [np.asarray(augment.augment(image, numpy_stream(0, "image-augment", "train", "5", v))) for v in (0, 0, 1)]
    assert np.array_equal(outputs[0], outputs[1])
    assert view_seed(0, "image-augment", "train", "5", 0) != view_seed(0, "image-augment", "train", "5", 1)
    assert view_seed(0, "a", "train", "5", 0) != view_seed(1, "a", "train", "5", 0)


@pytest.fixture(scope="module")
def bert(tiny):
    return AutoTokenizer.from_pretrained(tiny["text"]), tiny["text"]


TEXTS = ["good happy day", "bad sad terrible awful day today", "fine", "the cat sat on a good mat"]


def _views(tokenizer, model, texts, ids):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    streams = [torch_stream(0, "text-dropout", "train", i, 0) for i in ids]
    before = global_random_state()
    model.train()
    with torch.no_grad(), RecordDropout(streams, batch["attention_mask"]):
        hidden = model(**batch).last_hidden_state
    check_no_global_draws(before, "tiny")
    return [hidden[row][batch["attention_mask"][row].bool()] for row in range(len(texts))]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_a_dropout_view_is_the_same_alone_or_in_any_batch(bert, implementation):
    tokenizer, path = bert
    model = AutoModel.from_pretrained(path, attn_implementation=implementation)
    ids = [str(i) for i in range(len(TEXTS))]
    together = _views(tokenizer, model, TEXTS, ids)
    reversed_ = _views(tokenizer, model, TEXTS[::-1], ids[::-1])[::-1]
    for row, text in enumerate(TEXTS):
        (alone,) = _views(tokenizer, model, [text], [ids[row]])
        torch.testing.assert_close(together[row], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(reversed_[row], alone, atol=1e-5, rtol=1e-5)
    model.eval()
    with torch.no_grad():
        clean = model(**tokenizer(TEXTS[1], return_tensors="pt")).last_hidden_state[0]
    assert (together[1] - clean).abs().max() > 1e-2  # dropout did act
    (other,) = _views(tokenizer, model, [TEXTS[1]], ["another record"])
    assert (together[1] - other).abs().max() > 1e-2  # another record, another stream


def test_eager_and_sdpa_attention_draw_the_same_masks(bert):
    tokenizer, path = bert
    ids = [str(i) for i in range(len(TEXTS))]
    eager = _views(tokenizer, AutoModel.from_pretrained(path, attn_implementation="eager"), TEXTS, ids)
    sdpa = _views(tokenizer, AutoModel.from_pretrained(path, attn_implementation="sdpa"), TEXTS, ids)
    for a, b in zip(eager, sdpa):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_masks_keep_one_minus_p_and_scale_the_kept_values():
    streams = [torch.Generator().manual_seed(i) for i in range(3)]
    mask = torch.tensor([[1] * 50 + [0] * 10, [1] * 60, [1] * 20 + [0] * 40])
    mode = RecordDropout(streams, mask)
    out = mode.dropout(torch.ones(3, 60, 64), 0.25)
    scale = torch.tensor(1 / 0.75)  # float32, as the values
    assert set(torch.unique(out).tolist()) <= {0.0, float(scale)}
    real = mask.bool()
    assert abs(float((out[real] > 0).float().mean()) - 0.75) < 0.02
    assert (out[~real] == scale).all()  # padding is never dropped (it reaches no real token)


def test_randomness_the_views_cannot_see_is_refused():
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.rand(x.shape)

    before = global_random_state()
    with RecordDropout([torch.Generator()], torch.ones(1, 4)):
        Noisy()(torch.zeros(1, 4, 8))
    with pytest.raises(UncontrolledRandomness, match="drew from the global random stream"):
        check_no_global_draws(before, "noisy")
    with pytest.raises(UncontrolledRandomness, match=r"shape \[1, 8\]"):
        with RecordDropout([torch.Generator()], torch.ones(1, 4)):
            torch.nn.functional.dropout(torch.ones(1, 8), 0.1, training=True)


def test_a_record_gets_the_same_draws_on_its_real_tokens_wherever_they_sit():
    """A row's mask depends on its real tokens only: with holes or padding in between, the same draws land on
    its real positions, in order (the mask of a text is the mask of its tokens, not of its padding)."""
    prefix = torch.tensor([[1, 1, 1, 0, 0]])
    holes = torch.tensor([[1, 0, 1, 0, 1]])
    for shape in ((1, 5, 6), (1, 2, 5, 5)):
        masks = [RecordDropout([torch.Generator().manual_seed(3)], m).mask(shape, 0.5) for m in (prefix, holes)]
        if len(shape) == 3:
            assert torch.equal(masks[0][0, :3], masks[1][0, [0, 2, 4]])
        else:
            assert torch.equal(masks[0][0][:, :3, :3], masks[1][0][:, [0, 2, 4]][:, :, [0, 2, 4]])
        assert 0 < float(masks[0].mean()) < 1
