"""Shared fixtures: tiny random encoders and a small generated dataset, built once per test session in a
temporary folder and loaded through the same from_pretrained(folder) path a hub id takes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.extract.config import ExtractConfig
from spp_scl.extract.demo import make_demo_dataset, make_tiny_image_encoder, make_tiny_text_encoder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Folders of a tiny BERT, a tiny ResNet and a generated dataset (40 / 12 / 12 records)."""
    base = tmp_path_factory.mktemp("tiny")
    return {
        "text": str(make_tiny_text_encoder(base / "text")),
        "image": str(make_tiny_image_encoder(base / "image")),
        "data": str(make_demo_dataset(base / "data", {"train": 40, "dev": 12, "test": 12}, seed=3)),
        "base": base,
    }


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """`synthetic_cache(sizes, **settings)`: a generated cache (spp_scl.cache.synthetic), built once per test session
    for each set of settings, so test files asking for the same one share it. Read-only: a test that changes a cache
    builds its own in tmp_path."""
    folder, built = tmp_path_factory.mktemp("synthetic"), {}

    def build(sizes: dict, **settings):
        key = json.dumps([sizes, settings], sort_keys=True)
        if key not in built:
            built[key] = write_synthetic_cache(folder / f"cache{len(built)}.h5", sizes, **settings)
        return built[key]

    return build


def tiny_config(tiny, out, **overrides) -> ExtractConfig:
    settings = dict(
        data=tiny["data"],
        dataset="mvsa-single",
        text_encoder=tiny["text"],
        image_encoder=tiny["image"],
        out=str(out),
        shard_size=16,
        text_batch_size=8,
        image_batch_size=8,
        progress=False,
    )
    settings.update(overrides)
    return ExtractConfig(**settings)


def cache_contents(path) -> dict:
    """Every dataset and file attribute of a cache, for comparing two files."""
    contents = {}
    with h5py.File(path, "r") as file:
        contents.update({f"@{key}": value for key, value in file.attrs.items()})

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                contents[name] = item.asstr()[:] if item.dtype.kind == "O" else item[:]

        file.visititems(visit)
    return contents


def assert_same_cache(a, b) -> None:
    first, second = cache_contents(a), cache_contents(b)
    assert first.keys() == second.keys()
    for key in first:
        assert np.array_equal(np.asarray(first[key]), np.asarray(second[key])), f"{key} differs"


ROOT_DIR = __import__("pathlib").Path(__file__).resolve().parents[1]
