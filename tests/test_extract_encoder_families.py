"""Encoder families: transformers encoders, CLIP and SigLIP towers, decoders, timm backbones. Each feature is checked
against a direct forward of the model on one input alone (no padding, no batch), computed here independently."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spp_scl.extract.fingerprint import cache_differences
from spp_scl.extract.image_encoder import ImageEncoder
from spp_scl.extract.text_encoder import TextEncoder
from tests.timm_import import import_timm
from tests.tiny_towers import as_hub_download, make_tiny_clip, make_tiny_decoder, make_tiny_timm

TEXTS = ["a happy day in the city", "sad", "love this photo of the old street at night"]


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    base = tmp_path_factory.mktemp("towers")
    return {
        "clip": make_tiny_clip(base / "clip", "clip"),
        "siglip": make_tiny_clip(base / "siglip", "siglip"),
        "decoder-left": make_tiny_decoder(base / "decoder-left", "left"),
        "decoder-right": make_tiny_decoder(base / "decoder-right", "right"),
    }


def alone(encoder: TextEncoder, text: str) -> tuple[torch.Tensor, list[int]]:
    """[layers, tokens, dim] states of one text run by itself, and its token ids."""
    ids = encoder.tokenizer(text, truncation=True, max_length=encoder.max_length)["input_ids"]
    with torch.no_grad():
        hidden = encoder.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    return torch.stack([hidden[layer][0] for layer in encoder.layers]), ids


def expected_vector(states: torch.Tensor, ids: list[int], choice: str, eos_id: int) -> torch.Tensor:
    if choice == "first":
        return states[:, 0]
    if choice == "last":
        return states[:, len(ids) - 1]
    if choice == "mean":
        return states.sum(dim=1) / len(ids)
    return states[:, ids.index(eos_id) if eos_id in ids else len(ids) - 1]  # a text without one: its last token


@pytest.mark.parametrize(
    ("model", "choice", "expected_default"),
    [
        ("bert", "auto", "first"),
        ("bert", "mean", "mean"),
        ("clip", "auto", "eos"),
        ("siglip", "auto", "eos"),
        ("decoder-left", "auto", "last"),
        ("decoder-right", "auto", "last"),
        ("decoder-left", "first", "first"),
    ],
)
def test_sentence_token_is_the_models_own_summary_and_does_not_depend_on_padding(
    tiny, towers, model, choice, expected_default
):
    path = tiny["text"] if model == "bert" else str(towers[model])
    encoder = TextEncoder(path, [-2, -1], 202, sentence_token=choice)
    assert encoder.sentence_token == expected_default
    assert encoder.describe()["sentence_token"] == expected_default
    for text, (vector, tokens) in zip(TEXTS, encoder.encode(TEXTS)):  # a batch with padding on the model's side
        states, ids = alone(encoder, text)
        torch.testing.assert_close(tokens, states, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            vector, expected_vector(states, ids, expected_default, encoder.tokenizer.eos_token_id), atol=1e-5, rtol=1e-4
        )


def test_a_clip_text_tower_reads_at_most_its_positions_and_says_it_is_a_tower(towers):
    encoder = TextEncoder(str(towers["clip"]), [-1], 202)
    assert encoder.max_length == 77
    assert encoder.describe()["tower_of"] == "clip"
    assert encoder.describe()["class"] == "CLIPTextModel"
    first, tokens = encoder.encode(["word " * 200])[0]
    assert tokens.shape[1] == 77


def test_a_cache_from_before_the_choice_reads_as_the_first_token():
    wanted = {"text": {"model": "m", "sentence_token": "first"}}
    assert cache_differences({"text": {"model": "m"}}, wanted) == []
    assert cache_differences({"text": {"model": "m"}}, {"text": {"model": "m", "sentence_token": "mean"}}) == [
        "text.sentence_token: cache has 'first', this run asks 'mean'"
    ]


def test_an_unknown_sentence_token_is_refused(tiny):
    with pytest.raises(ValueError, match="--sentence-token middle: choose auto or one of first, last, eos, mean"):
        TextEncoder(tiny["text"], [-1], 202, sentence_token="middle")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_the_vision_tower_of_a_two_tower_checkpoint_gives_its_patch_grid(towers, kind):
    encoder = ImageEncoder(str(towers[kind]))
    pixels = torch.randn(2, 3, 32, 32)
    maps = encoder(pixels)
    assert maps.shape == (2, 16, 4, 4)  # 32-pixel images of 8-pixel patches, width 16
    from transformers import AutoModel

    with torch.no_grad():
        tokens = AutoModel.from_pretrained(towers[kind]).vision_model(pixel_values=pixels).last_hidden_state
    patches = tokens[:, -16:]  # CLIP's class token first; SigLIP has none
    for row in range(4):
        for column in range(4):
            torch.testing.assert_close(maps[:, :, row, column], patches[:, row * 4 + column], atol=1e-5, rtol=1e-4)
    assert encoder.describe()["kind"] == "transformers"
    assert encoder.preprocess.crop == 32


@pytest.fixture(scope="module")
def timm_models(tmp_path_factory):
    import_timm()
    base = tmp_path_factory.mktemp("timm")
    return {name: make_tiny_timm(base / name, name) for name in ("resnet18", "vit_tiny_patch16_224")}


def test_a_timm_cnn_gives_its_last_stage_and_its_own_preprocessing(timm_models):
    timm = import_timm()
    folder = timm_models["resnet18"]
    encoder = ImageEncoder(f"timm:local-dir:{folder}")
    # The weights' config: 64-pixel input, crop_pct 0.8, bicubic -> resize floor(64 / 0.8) = 80, as timm's eval.
    assert (encoder.preprocess.resize, encoder.preprocess.crop, encoder.preprocess.interpolation) == (80, 64, "bicubic")
    pixels = torch.randn(2, 3, 64, 64)
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixels), reference.forward_features(pixels))
    assert encoder(pixels).shape == (2, 512, 2, 2)
    description = encoder.describe()
    assert description["kind"] == "timm" and description["preprocess"]["interpolation"] == "bicubic"


def test_a_timm_vit_gives_its_patch_tokens_on_their_grid(timm_models):
    timm = import_timm()
    folder = timm_models["vit_tiny_patch16_224"]
    encoder = ImageEncoder(f"timm:local-dir:{folder}")
    pixels = torch.randn(2, 3, 32, 32)
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    with torch.no_grad():
        tokens = reference.forward_features(pixels)  # [2, 1 + 16, 24]: the class token, then 4 x 4 patches
    maps = encoder(pixels)
    assert maps.shape == (2, 24, 4, 4)
    side = math.isqrt(tokens.shape[1] - 1)
    for index in range(side * side):
        torch.testing.assert_close(maps[:, :, index // side, index % side], tokens[:, 1 + index])


def test_a_timm_hub_name_loads_from_the_hugging_face_cache_like_a_download(timm_models, tmp_path, monkeypatch):
    import_timm()
    hub = tmp_path / "hub"
    as_hub_download(timm_models["resnet18"], hub, "timm/tiny-resnet18")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    from_hub = ImageEncoder("timm:hf-hub:timm/tiny-resnet18").describe()
    local = ImageEncoder(f"timm:local-dir:{timm_models['resnet18']}").describe()
    assert from_hub["weights_sha256"] == local["weights_sha256"]
    assert from_hub["config_sha256"] == local["config_sha256"]  # where the weights came from is not what they are


def test_a_timm_spec_that_cannot_load_is_one_line(timm_models, tmp_path):
    import_timm()
    from spp_scl.core.errors import InputError
    from spp_scl.extract.encoder_source import check_encoders

    with pytest.raises(InputError, match=r"is not a folder saved by timm \(no config.json in it\)"):
        check_encoders(None, f"timm:local-dir:{tmp_path}")
    with pytest.raises(InputError, match="name a timm model after 'timm:'"):
        check_encoders(None, "timm:")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"pickled has no model.safetensors; save the model with"):
        check_encoders(None, f"timm:local-dir:{pickled}")


@pytest.mark.parametrize("pair", ["clip for both", "decoder and timm vit"])
def test_extract_train_and_predict_agree_with_each_family(tiny, towers, timm_models, tmp_path, pair, monkeypatch):
    import csv
    import json

    from spp_scl.cache.layout import read_attrs
    from spp_scl.extract.pipeline import run as extract
    from spp_scl.heads.presets import resolve_config
    from spp_scl.runs.predict.predictor import Predictor
    from spp_scl.runs.train.trainer import train
    from tests.conftest import tiny_config

    if pair == "clip for both":
        text, image, token = str(towers["clip"]), str(towers["clip"]), "eos"
    else:
        monkeypatch.chdir(timm_models["vit_tiny_patch16_224"].parent)  # a relative folder, as a user types it
        text, image, token = str(towers["decoder-left"]), "timm:local-dir:vit_tiny_patch16_224", "last"
    cache = tmp_path / "cache.h5"
    extract(tiny_config(tiny, cache, text_encoder=text, image_encoder=image), log=lambda *_: None)
    fingerprint = read_attrs(cache)["fingerprint"]
    assert fingerprint["text"]["sentence_token"] == token
    run_dir = tmp_path / "run"
    train(cache, resolve_config("mvsa-single", epochs=1, batch_size=8), run_dir, log=lambda *_: None)
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())
    pairs = [(r["id"], Path(tiny["data"]) / "images" / f"{r['id']}.jpg", r["text"]) for r in records]
    predictor = Predictor(run_dir, batch_size=5)  # the encoders named by the cache, a timm one without a plugin opt-in
    with (run_dir / "predictions.csv").open() as handle:
        saved = {row["id"]: row for row in csv.DictReader(handle) if row["split"] == "dev"}
    results = list(predictor.predict(pairs))
    assert len(results) == len(records) and all(result.error is None for result in results)
    for result in results:  # the cache's features, recomputed from the raw posts: the same probabilities
        stored = [float(saved[result.id][f"p_{name}"]) for name in predictor.class_names]
        np.testing.assert_allclose([result.probabilities[n] for n in predictor.class_names], stored, atol=2e-5)


def test_a_cache_says_which_token_it_holds_and_holds_it(tiny, tmp_path):
    import h5py

    from spp_scl.cache.describe import describe, sentence_token
    from spp_scl.extract.pipeline import run as extract
    from tests.conftest import tiny_config

    cache = tmp_path / "mean.h5"
    extract(tiny_config(tiny, cache, sentence_token="mean"), log=lambda *_: None)
    assert "; sentence token mean" in describe(str(cache)).splitlines()[1]
    with h5py.File(cache, "r") as file:
        group = file["train"]
        offsets, states = group["token_offsets"][:], group["token_states"][:].astype(np.float32)
        vectors = group["first_token"][:].astype(np.float32)
    for row in range(len(vectors)):  # each stored vector is the mean of that record's stored token states
        mean = states[offsets[row] : offsets[row + 1]].mean(axis=0)
        np.testing.assert_allclose(vectors[row], mean, atol=2e-2, rtol=1e-2)
    assert sentence_token({"text": {"model": "m"}}) == "first"  # a cache from before the choice
