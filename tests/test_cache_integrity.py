"""A damaged cache never passes for a whole one: changed bytes in the features fail HDF5's fletcher32 check on
read, changed ids, labels or attributes fail their sha256 when the cache is opened, `inspect --verify` reads
and checks everything; each failure is one line naming the file and the dataset. A cache written before
checksums (format 1) still opens and trains, and is reported as not verifiable."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from spp_scl.cache.checksums import CacheDamaged
from spp_scl.cache.layout import FORMAT_VERSION, SPLIT_ARRAYS, read_attrs
from spp_scl.cache.reader import CachedSplit
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.cache.verify import verify_cache
from spp_scl.cli import main as spp_scl
from spp_scl.core.errors import EXIT_INPUT, InputError
from spp_scl.extract.pipeline import run as extract
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import train
from tests.conftest import tiny_config
from tests.tiny_run import tiny_cache


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return write_synthetic_cache(
        tmp_path_factory.mktemp("whole") / "cache.h5",
        {"train": 24, "dev": 8},
        layers=2,
        dim=8,
        map_shape=(4, 3, 3),
        mean_tokens=5,
        seed=2,
    )


def _flip(path, dataset: str, chunk: int | None = None, at: int = 3) -> None:
    """Change one byte of a dataset's stored data, as a failing disk or a bad copy would."""
    with h5py.File(path, "r") as file:
        data = file[dataset].id
        offset = data.get_chunk_info(chunk).byte_offset if chunk is not None else data.get_offset()
    with open(path, "r+b") as handle:
        handle.seek(offset + at)
        byte = handle.read(1)
        handle.seek(offset + at)
        handle.write(bytes([byte[0] ^ 0x10]))


def test_new_caches_carry_checksums(whole):
    attrs = read_attrs(whole)
    assert attrs["format_version"] == FORMAT_VERSION == 2
    with h5py.File(whole, "r") as file:
        assert all(file[f"train/{name}"].fletcher32 for name in ("image_maps", "first_token", "token_states"))
        assert all(len(file[f"train/{name}"].attrs["sha256"]) == 64 for name in SPLIT_ARRAYS)
    verification = verify_cache(whole)
    assert verification.verifiable and not verification.problems and verification.checked == 2 * 7 + 1


def test_a_changed_byte_in_the_features_fails_every_read_by_name(whole, tmp_path, capsys):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(whole, damaged)
    _flip(damaged, "train/image_maps", chunk=5)
    assert verify_cache(damaged).problems == ["train/image_maps cannot be read (Can't synchronously read data)"]
    with pytest.raises(CacheDamaged, match=r"damaged\.h5: the train features cannot be read .*extract --force"):
        CachedSplit(damaged, "train", in_memory=True)
    split = CachedSplit(damaged, "train", in_memory=False)  # read per batch: the failing batch names it
    split.batch([0, 1])
    with pytest.raises(CacheDamaged, match=r"damaged\.h5: train/image_maps cannot be read"):
        split.batch([4, 5, 6])
    split.close()
    with pytest.raises(InputError, match=r"damaged\.h5"):
        train(damaged, resolve_config("mvsa-single", epochs=1, batch_size=8), tmp_path / "run", log=lambda *_: None)
    assert spp_scl(["inspect", str(damaged), "--verify"]) == EXIT_INPUT
    error = capsys.readouterr().err.strip()
    assert error == f"error: {damaged} is damaged: train/image_maps cannot be read (Can't synchronously read data)"


def test_changed_labels_or_attributes_fail_at_open(whole, tmp_path):
    labels = tmp_path / "labels.h5"
    shutil.copy(whole, labels)
    _flip(labels, "dev/labels", at=8)
    with pytest.raises(CacheDamaged, match=r"labels\.h5: dev/labels does not match its checksum"):
        CachedSplit(labels, "dev")
    CachedSplit(labels, "train").close()  # the other split is whole and opens
    assert verify_cache(labels).problems == ["dev/labels does not match its checksum"]

    attributes = tmp_path / "attributes.h5"
    shutil.copy(whole, attributes)
    with h5py.File(attributes, "r+") as file:
        file.attrs["class_names"] = json.dumps(["class1", "class0", "class2"])
    with pytest.raises(CacheDamaged, match=r"attributes\.h5: the file attributes do not match their checksum"):
        CachedSplit(attributes, "train")


def _as_format_1(source, target) -> None:
    """The cache as the tool wrote it before checksums: the same data, no filters, no hash attributes."""
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        for key, value in old.attrs.items():
            if key != "attrs_sha256":
                new.attrs[key] = value
        new.attrs["format_version"] = 1
        fingerprint = json.loads(old.attrs["fingerprint"])
        new.attrs["fingerprint"] = json.dumps({**fingerprint, "format_version": 1})

        def copy(name, item):
            if isinstance(item, h5py.Dataset):
                new.create_dataset(name, data=item[()], dtype=item.dtype)

        old.visititems(copy)


def test_a_format_1_cache_opens_trains_and_is_reported_unverifiable(tiny, tmp_path_factory, tmp_path):
    current = tiny_cache(tiny, tmp_path_factory)
    legacy = tmp_path / "legacy.h5"
    _as_format_1(current, legacy)
    new_split, old_split = CachedSplit(current, "dev"), CachedSplit(legacy, "dev")
    batch_new, batch_old = new_split.batch(range(5)), old_split.batch(range(5))
    assert batch_new.ids == batch_old.ids
    assert np.array_equal(batch_new.image_maps.numpy(), batch_old.image_maps.numpy())
    assert np.array_equal(batch_new.token_states.numpy(), batch_old.token_states.numpy())
    verification = verify_cache(legacy)
    assert not verification.verifiable and "cannot be verified" in verification.text()
    result = train(legacy, resolve_config("mvsa-single", epochs=1, batch_size=8), tmp_path / "run", log=lambda *_: None)
    assert result.epochs_run == 1
    # Extraction with the same settings takes it as up to date (same features), saying it cannot be verified.
    summary = extract(tiny_config(tiny, legacy), log=lambda *_: None)
    assert summary.up_to_date
    assert f"note: {legacy} was written before checksums (format 1): it cannot be verified" in summary.text()
