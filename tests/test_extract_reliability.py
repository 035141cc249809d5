"""What an extraction never does, whatever happens around it: two runs never write one output at once (the
second is refused, naming the first), a full disk is one line with no partial file and every finished shard
kept, a damaged shard is named and extracted again, --force replaces anything at --out, a written cache
reads back against its checksums, and ids that look like formulas are written as text in skipped.csv."""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

import spp_scl.extract.pipeline as pipeline
from spp_scl.cache.layout import read_attrs
from spp_scl.cache.verify import verify_cache
from spp_scl.core.errors import EXIT_REFUSED, EXIT_STORAGE, InputError, StorageError
from spp_scl.extract.output_lock import lock_path
from spp_scl.extract.pipeline import parts_folder, run, skipped_report_path
from spp_scl.extract.shards import shard_path, shard_problem
from tests.conftest import ROOT_DIR, assert_same_cache, tiny_config

pytestmark = pytest.mark.slow  # end to end: processes, extractions or many epochs

GATED_PLUGIN = """
import os, time, torch
class GatedNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 4, stride=4)

    def forward(self, pixels):
        gate = os.environ.get("PLUGIN_GATE")  # a test holds the extraction here until it creates this file
        while gate and not os.path.exists(gate):
            time.sleep(0.05)
        return self.conv(pixels)

def build():
    return GatedNet().eval(), {"resize": 40, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "name": "gated-v1"}
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plugin") / "gated_plugin.py"
    path.write_text(GATED_PLUGIN)
    return f"{path}:build"


@pytest.fixture(scope="module")
def reference(tiny, plugin, tmp_path_factory) -> Path:
    """The cache an undisturbed run writes, for comparisons."""
    path = tmp_path_factory.mktemp("reference") / "cache.h5"
    run(tiny_config(tiny, path, image_encoder=plugin, shard_size=16))
    return path


def _cli(tiny, out, plugin, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spp_scl",
        "extract",
        "--data",
        tiny["data"],
        "--dataset",
        "mvsa-single",
        "--text-encoder",
        tiny["text"],
        "--image-encoder",
        plugin,
        "--out",
        str(out),
        "--shard-size",
        "16",
        "--text-batch-size",
        "8",
        "--image-batch-size",
        "8",
        "--no-progress",
        *extra,
    ]


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT_DIR), **extra}


def test_a_second_extraction_to_the_same_output_is_refused_naming_the_first(tiny, plugin, reference, tmp_path):
    out, gate = tmp_path / "cache.h5", tmp_path / "go"
    # The first run waits at its first image batch until the second one has tried.
    first = subprocess.Popen(
        _cli(tiny, out, plugin), env=_env(PLUGIN_GATE=str(gate)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 600  # a busy machine is slow, never wrong
        while not (lock_path(out).exists() or parts_folder(out).exists()) and time.monotonic() < deadline:
            assert first.poll() is None, first.stderr.read().decode()
            time.sleep(0.05)
        second = subprocess.run(_cli(tiny, out, plugin), env=_env(), capture_output=True, text=True, timeout=900)
        gate.write_text("go")
        assert second.returncode == EXIT_REFUSED, second.stderr
        message = second.stderr.strip().splitlines()[-1]
        assert message.startswith(f"error: {out} is being written by another extraction (pid {first.pid} on ")
        assert str(lock_path(out)) in message
        stdout, stderr = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr.decode()
    assert f"cache {out} written" in stdout.decode()
    assert not verify_cache(out).problems
    assert_same_cache(reference, out)
    assert not lock_path(out).exists()


def _interrupted(tiny, plugin, out, monkeypatch) -> Path:
    """An extraction stopped after its last shard and before the cache was assembled: its parts folder."""

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "assemble", stop)
        with pytest.raises(KeyboardInterrupt):
            run(tiny_config(tiny, out, image_encoder=plugin, shard_size=16))
    parts = parts_folder(out)
    assert len(list(parts.glob("shard-*.safetensors"))) == 4 and not out.exists()
    return parts


def test_damaged_shards_are_named_and_extracted_again(tiny, plugin, reference, tmp_path, monkeypatch, caplog):
    out = tmp_path / "cache.h5"
    parts = _interrupted(tiny, plugin, out, monkeypatch)
    cut, empty, flipped = (shard_path(parts, i) for i in range(3))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    empty.write_bytes(b"")
    data = bytearray(flipped.read_bytes())
    data[-100] ^= 0x40  # inside the last tensor's bytes, past the header
    flipped.write_bytes(bytes(data))
    assert "does not match its checksum" in shard_problem(flipped)

    with caplog.at_level(logging.WARNING, logger="extract"):
        summary = run(tiny_config(tiny, out, image_encoder=plugin, shard_size=16), log=lambda *_: None)
    warned = "\n".join(record.getMessage() for record in caplog.records)
    for path in (cut, empty, flipped):
        assert f"shard {path}" in warned and "extracted again" in warned
    assert not summary.up_to_date
    assert_same_cache(reference, out)


def test_force_replaces_anything_at_out_and_errors_name_the_file(tiny, plugin, reference, tmp_path, monkeypatch):
    out = tmp_path / "cache.h5"
    config = tiny_config(tiny, out, image_encoder=plugin, shard_size=16)
    forced = tiny_config(tiny, out, image_encoder=plugin, shard_size=16, force=True)

    def no_fingerprint(path):
        with h5py.File(path, "w") as file:
            file["x"] = [1, 2, 3]

    occupants = {
        "cut": (lambda path: path.write_bytes(reference.read_bytes()[:4000]), "is not a readable HDF5 cache"),
        "text": (lambda path: path.write_text("not a cache at all\n"), "is not a readable HDF5 cache"),
        "no fingerprint": (no_fingerprint, "has no 'fingerprint' attribute"),
    }
    for write, message in occupants.values():
        write(out)
        with pytest.raises(InputError, match=rf"{out}.*{message}.*pass --force to replace it"):
            run(config)
        run(forced)
        assert_same_cache(reference, out)
        out.unlink()

    parts = _interrupted(tiny, plugin, out, monkeypatch)
    (parts / "fingerprint.json").write_text('{"format_version": 2, "text": ')
    with pytest.raises(InputError, match=rf"{parts / 'fingerprint.json'} is unreadable.*pass --force"):
        run(config)
    run(forced)
    assert_same_cache(reference, out)

    shutil.rmtree(out.parent / "folder", ignore_errors=True)
    (out.parent / "folder").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        run(tiny_config(tiny, out.parent / "folder", image_encoder=plugin, force=True))


def test_a_full_disk_is_one_line_with_no_partial_file_and_the_shards_kept(
    tiny, plugin, reference, tmp_path, monkeypatch
):
    """Writes that fail with ENOSPC, injected: while a shard is written, and while the HDF5 file is written
    (the check of free space before it is passed by, as when another process fills the disk meanwhile)."""
    out = tmp_path / "cache.h5"
    parts = parts_folder(out)
    real_open, writes = open, []

    def filling_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "shard-00002" not in str(path):
            return handle

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, data):
                handle.write(data[: len(data) // 2])
                writes.append(path)
                raise OSError(errno.ENOSPC, "No space left on device")

        return Full()

    monkeypatch.setattr("spp_scl.core.storage.open", filling_open, raising=False)
    with pytest.raises(StorageError, match=rf"disk full writing {shard_path(parts, 2)}: it needs \d+\.\d MiB") as error:
        run(tiny_config(tiny, out, image_encoder=plugin, shard_size=16))
    assert error.value.exit_code == EXIT_STORAGE and "\n" not in str(error.value)
    assert writes and not list(parts.glob("*.tmp"))
    assert shard_path(parts, 0).exists() and shard_path(parts, 1).exists() and not shard_path(parts, 2).exists()
    monkeypatch.undo()

    import spp_scl.cache.layout
    import spp_scl.extract.assembly

    real_append, appended = spp_scl.cache.layout.CacheWriter.append, []

    def append_until_full(self, *args):
        appended.append(1)
        if len(appended) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, *args)

    monkeypatch.setattr(spp_scl.cache.layout.CacheWriter, "append", append_until_full)
    monkeypatch.setattr(spp_scl.extract.assembly, "require_free_space", lambda *args, **kwargs: None)
    with pytest.raises(StorageError, match=rf"disk full writing {out}\.tmp: it needs .*finished shards are kept"):
        run(tiny_config(tiny, out, image_encoder=plugin, shard_size=16), log=lambda *_: None)
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    assert len(list(parts.glob("shard-*.safetensors"))) == 4
    monkeypatch.undo()

    run(tiny_config(tiny, out, image_encoder=plugin, shard_size=16), log=lambda *_: None)
    assert_same_cache(reference, out)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and a tmpfs mount in a user namespace")
def test_a_really_full_disk_keeps_shards_and_resumes_to_the_same_cache(tiny, plugin, reference, tmp_path):
    """A small tmpfs, grown step by step: too small for all the shards, then for the cache, then enough.
    The third step bypasses the free-space check, so HDF5 itself hits the full disk (and must not crash)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "cache.h5"
    command = " ".join(f"'{part}'" for part in _cli(tiny, out, plugin))
    no_check = command.replace(
        "'-m' 'spp_scl'",
        "'-c' 'import sys, spp_scl.extract.assembly as a; a.require_free_space = lambda *x, **k: None; "
        "from spp_scl.cli import main; sys.exit(main())'",
    )
    script = f"""
        mount -t tmpfs -o size=200k tmpfs {disk}
        {command} 2> {tmp_path}/1.err; echo $? > {tmp_path}/1.code; ls {out}.parts > {tmp_path}/1.ls
        mount -o remount,size=400k {disk}
        {command} 2> {tmp_path}/2.err; echo $? > {tmp_path}/2.code; ls {disk} > {tmp_path}/2.ls
        {no_check} 2> {tmp_path}/3.err; echo $? > {tmp_path}/3.code; ls {disk} > {tmp_path}/3.ls
        mount -o remount,size=4m {disk}
        {command} > /dev/null 2> {tmp_path}/4.err; echo $? > {tmp_path}/4.code; cp {out} {tmp_path}/result.h5
    """
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], env=_env(), check=True, timeout=2400
    )  # four extractions, each a few seconds alone; on a machine loaded 4-6 deep, minutes

    def step(number):
        """(exit status, the error line); the other lines on stderr are progress notes, never a traceback."""
        lines = (tmp_path / f"{number}.err").read_text().strip().splitlines()
        assert not any("Traceback" in line or "Segmentation" in line for line in lines), lines
        return int((tmp_path / f"{number}.code").read_text()), lines[-1] if lines else ""

    code, err = step(1)
    assert code == EXIT_STORAGE, err
    assert err.startswith(f"error: disk full writing {out}.parts/shard-0000") and "finished shards are kept" in err
    listed = (tmp_path / "1.ls").read_text().split()
    assert "shard-00000.safetensors" in listed and not any(name.endswith(".tmp") for name in listed)
    for number in (2, 3):
        code, err = step(number)
        assert code == EXIT_STORAGE, err
        assert err.startswith(f"error: disk full writing {out}.tmp: it needs ")
        assert (tmp_path / f"{number}.ls").read_text().split() == ["cache.h5.parts"]
    code, err = step(4)
    assert code == 0, err
    assert_same_cache(reference, tmp_path / "result.h5")


def test_the_written_cache_reads_back_against_its_checksums_and_records_absolute_paths(tiny, plugin, reference):
    verification = verify_cache(reference)
    assert verification.verifiable and not verification.problems and verification.checked == 22
    provenance = read_attrs(reference)["provenance"]
    assert provenance["image_encoder"] == plugin and Path(provenance["text_encoder"]).is_absolute()


def test_a_relative_plugin_path_is_recorded_absolute(tiny, plugin, tmp_path, monkeypatch):
    path = Path(plugin.split(":")[0])
    monkeypatch.chdir(path.parent)
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out, image_encoder=f"{path.name}:build"))
    assert read_attrs(out)["provenance"]["image_encoder"] == plugin
    assert read_attrs(out)["fingerprint"]["image"]["source_sha256"] is not None


def test_skipped_ids_that_look_like_formulas_are_written_as_text(tiny, tmp_path):
    records = json.loads((Path(tiny["data"]) / "train.json").read_text())[:12]
    data = tmp_path / "posts.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "text", "label", "split"])
        for record in records:
            writer.writerow([record["id"], f"images/{record['id']}.jpg", record["text"], "positive", "train"])
        writer.writerow(['=HYPERLINK("http://example.com","x")', "nowhere.jpg", "a text", "positive", "train"])
        writer.writerow(["@SUM(1)", "nowhere.jpg", "a text", "postive", "train"])
    out = tmp_path / "cache.h5"
    summary = run(tiny_config(tiny, out, data=str(data), dataset=None, images=tiny["data"]))
    rows = list(csv.DictReader(skipped_report_path(out).open()))
    assert [row["id"] for row in rows] == ['\'=HYPERLINK("http://example.com","x")', "'@SUM(1)"]
    text = summary.text()
    assert "classes inferred from the labels (no --dataset or --classes): positive (12), postive (0)" in text
    assert "warning: class 'postive' has only 0 records" in text
