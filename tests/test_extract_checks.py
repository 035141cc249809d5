"""Where features enter and leave a cache, what cannot be used is named in one line, never passed on: an encoder
output beyond float16's range is refused naming the record, split and array (and float32 storage stores it);
`inspect --verify` reports non-finite features instead of "verified"; an image linked to itself is skipped like
any unusable path; metadata too damaged for HDF5 is one line (status 3) in inspect, train and extract; and
`--views` is bounded by an estimate of what the views would take."""

from __future__ import annotations

import random
import shutil

import h5py
import numpy as np
import pytest

from spp_scl.cache.checksums import CacheDamaged, dataset_sha256
from spp_scl.cache.layout import read_attrs, read_skipped, split_sizes
from spp_scl.cache.reader import CachedSplit, cache_summary
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.cache.verify import verify_cache
from spp_scl.cli import main as spp_scl
from spp_scl.core.errors import EXIT_INPUT
from spp_scl.extract.pipeline import parts_folder, run
from spp_scl.extract.records import BadInput
from tests.conftest import tiny_config

# An image encoder whose outputs reach 1e5, beyond float16's largest value (65504).
LOUD_ENCODER = """
import torch

class Loud(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 4, stride=4)

    def forward(self, pixels):
        return 1e5 + self.conv(pixels)

def build():
    return Loud().eval(), {"resize": 36, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "name": "loud-v1"}
"""


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return write_synthetic_cache(
        tmp_path_factory.mktemp("checks") / "cache.h5",
        {"train": 24, "dev": 8},
        layers=2,
        dim=8,
        map_shape=(4, 3, 3),
        mean_tokens=5,
        seed=2,
    )


def test_a_float16_overflow_is_refused_naming_the_record_and_float32_stores_it(tiny, tmp_path, capsys):
    plugin = tmp_path / "loud.py"
    plugin.write_text(LOUD_ENCODER)
    out = tmp_path / "cache.h5"
    with pytest.raises(BadInput) as raised:
        run(tiny_config(tiny, out, image_encoder=f"{plugin}:build"))
    message = str(raised.value)
    assert "train record id " in message and "its image_maps hold non-finite values (inf" in message, message
    assert "largest value is 65504" in message and "--dtype float32 --force" in message and "\n" not in message
    assert not out.exists() and not list(parts_folder(out).glob("shard-*"))
    run(tiny_config(tiny, out, image_encoder=f"{plugin}:build", dtype="float32", force=True))
    verification = verify_cache(out)
    assert not verification.problems and not verification.non_finite
    assert spp_scl(["inspect", str(out), "--verify"]) == 0
    assert "every feature is finite" in capsys.readouterr().out


def test_inspect_verify_reports_non_finite_features_instead_of_verified(whole, tmp_path, capsys):
    """A cache holding inf with its checksums intact, as extraction wrote one before it checked."""
    written = tmp_path / "inf.h5"
    shutil.copy(whole, written)
    with h5py.File(written, "r+") as file:
        maps = file["train/image_maps"]
        maps[3, 0, 1, 1] = np.inf
        maps.attrs["sha256"] = dataset_sha256(maps)
    verification = verify_cache(written)
    assert not verification.problems
    assert verification.non_finite == ["train/image_maps holds 1 inf or NaN values (the first in record id 'train-3')"]
    assert spp_scl(["inspect", str(written), "--verify"]) == EXIT_INPUT
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {written} holds non-finite features: train/image_maps holds 1 inf") and (
        "--dtype float32" in error and "\n" not in error
    )


def test_an_image_linked_to_itself_is_skipped_and_the_rest_extracted(tiny, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    looped = sorted((data / "images").glob("*.jpg"))[0]
    looped.unlink()
    looped.symlink_to(looped.name)  # a link to itself
    summary = run(tiny_config(tiny, tmp_path / "c.h5", data=str(data)))
    reasons = {item["id"]: item["reason"] for item in summary.skipped}
    assert reasons == {looped.stem: reasons[looped.stem]} and "not usable" in reasons[looped.stem]
    assert "loop" in reasons[looped.stem].lower()
    assert sum(summary.records.values()) == 40 + 12 + 12 - 1


def _metadata_bytes(path) -> list[int]:
    """Offsets of the bytes that are not dataset contents: object headers, heaps, B-trees, the superblock."""
    contents = np.zeros(path.stat().st_size, dtype=bool)

    def mark(name, item):
        if isinstance(item, h5py.Dataset) and item.size:
            data = item.id
            if item.chunks is None:
                contents[data.get_offset() : data.get_offset() + data.get_storage_size()] = True
            else:
                for index in range(data.get_num_chunks()):
                    chunk = data.get_chunk_info(index)
                    contents[chunk.byte_offset : chunk.byte_offset + chunk.size] = True

    with h5py.File(path, "r") as file:
        file.visititems(mark)
    return list(np.flatnonzero(~contents))


# What inspect, train and extract read of a cache (extract: the attributes, splits and skipped records of the
# cache at --out, to tell whether it is up to date).
READERS = {
    "verify": lambda path: verify_cache(path),
    "attributes": read_attrs,
    "splits": split_sizes,
    "skipped": read_skipped,
    "summary": cache_summary,
    "train split": lambda path: CachedSplit(path, "train"),
}


def test_damaged_metadata_is_one_line_in_every_reader(whole, tmp_path):
    """Bytes of the file's metadata damaged at 60 random places, one at a time (as about 1 in 16 random damages
    of a real cache): each reader either reads the file or says it is damaged, naming it, in one line."""
    positions, pristine, seen = _metadata_bytes(whole), whole.read_bytes(), set()
    damaged = tmp_path / "damaged.h5"
    chance = random.Random(30)
    for position in chance.sample(positions, 60):
        data = bytearray(pristine)
        data[position : position + 4] = bytes(chance.randrange(256) for _ in range(4))
        damaged.write_bytes(bytes(data))
        for name, reader in READERS.items():
            try:
                result = reader(damaged)
            except CacheDamaged as error:
                assert str(damaged) in str(error) and "\n" not in str(error), (position, name, error)
                seen.add(name)
            else:
                if name == "verify" and result.problems:
                    seen.add(name)
    assert {"verify", "train split"} <= seen  # the sample did hit damage those readers meet


def test_damaged_metadata_is_exit_3_in_inspect_and_train(whole, tmp_path, capsys):
    damaged = tmp_path / "damaged.h5"
    data = bytearray(whole.read_bytes())
    with h5py.File(whole, "r") as file:  # the object header of train/labels: every reader opens it
        header = h5py.h5o.get_info(file["train/labels"].id).addr
    data[header + 4 : header + 12] = b"\xff" * 8
    damaged.write_bytes(bytes(data))
    for command in (
        ["inspect", str(damaged), "--verify"],
        ["inspect", str(damaged)],
        ["train", "--cache", str(damaged), "--preset", "mvsa-single", "--epochs", "1", "--out", str(tmp_path / "r")],
    ):
        assert spp_scl(command) == EXIT_INPUT, command
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and str(damaged) in error and "\n" not in error, (command, error)


def test_views_beyond_what_the_disk_or_memory_holds_are_refused_with_an_estimate(tiny, tmp_path):
    out = tmp_path / "cache.h5"
    with pytest.raises(
        BadInput, match=r"^--views 1000000: .* would take about [\d.]+ [KMGT]iB .*(--views|fewer views)"
    ):
        run(tiny_config(tiny, out, views=1_000_000))
    assert not out.exists() and not list(parts_folder(out).glob("shard-*"))
