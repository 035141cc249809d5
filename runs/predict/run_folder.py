"""Read access to a finished run folder (written by runs/train/trainer.py), shared by predict and the diagnostics.

A run folder names the cache it trained on (`config.json`: path, extraction fingerprint and the fingerprint's
sha256) and the head it selected (`head.json` + `model.safetensors`). Both predict and the diagnostics need the
same few things from it: the selected head, the head as the trainer initialised it, and a cache split read with
exactly the text layers the head uses.

Only a finished run is read (runs/train/finished_run.py): one without metrics.json is refused as unfinished (or
as being trained, while its training runs), and its weights, head.json and metrics.json must be those its training
finished with. Its cache must still be the one it trained on: whenever the cache is read, its fingerprint is
compared with the one config.json recorded, and a difference (the cache rebuilt from other data or encoders at
the same path) is refused, naming what changed; config.json's fingerprint must match its recorded sha256.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spp_scl.cache.reader import CachedSplit
from spp_scl.core.errors import InputError, Refused
from spp_scl.extract.fingerprint import sha256_json
from spp_scl.runs.train.checkpoint import build_head, load_head, read_head_meta, read_json_object
from spp_scl.runs.train.finished_run import check_as_finished, check_finished


class RunFolderError(InputError):
    """A run folder that lacks what is asked of it (a file, its cache, an encoder fingerprint)."""


class CacheChanged(Refused, RunFolderError):
    """The cache at a run's cache path is not the one the run trained on."""


MANIFEST = "export.json"  # written by spp_scl.runs.predict.export: the run folders of an exported ensemble


def exported_members(path: str | Path) -> list[Path]:
    """The run folders `path` stands for: itself (a run folder, or a one-run export, which is one), or the members
    an ensemble export lists in export.json, each a subfolder of it (no name may lead elsewhere)."""
    path = Path(path)
    manifest = path / MANIFEST
    if (path / "config.json").is_file() or not manifest.is_file():
        return [path]
    members = read_json_object(manifest).get("runs")
    if not isinstance(members, list) or not members or not all(isinstance(name, str) for name in members):
        raise RunFolderError(f"{manifest}: field runs must be a list of the export's run folders")
    folders = []
    for name in members:
        if name in ("", ".", "..") or Path(name).name != name:
            raise RunFolderError(f"{manifest}: field runs names {name!r}, which is not a subfolder of the export")
        folders.append(path / name)
    return folders


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def fingerprint_changes(trained: dict, now: dict) -> list[str]:
    """One line per fingerprint setting that differs: 'text.max_length: trained on 202, the cache has 64'."""
    old, new = _flat(trained), _flat(now)
    return [
        f"{key}: trained on {old.get(key, '<absent>')!r}, the cache has {new.get(key, '<absent>')!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, "<absent>") != new.get(key, "<absent>")
    ]


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise RunFolderError(f"{self.path} is not a finished run folder: it has no config.json")
        check_finished(self.path)  # no metrics.json: stopped, failed or still training
        for name in ("head.json", "model.safetensors"):
            if not (self.path / name).is_file():
                raise RunFolderError(f"{self.path} is not a finished run folder: it has no {name}")
        # Nothing in these files is trusted: every field is checked before use and a bad one is named.
        self.run_config: dict = read_json_object(self.path / "config.json")
        self.config, shapes = read_head_meta(self.path)
        self.head_meta: dict = {"config": self.config.to_dict(), **shapes}
        self.class_names: list[str] = shapes["class_names"]
        check_as_finished(self.path, ("metrics.json",))
        # The absolute encoder layers the head reads: all cached layers, or the last k with text_layers_last.
        self.text_layers: list[int] = shapes["text_layers"]
        cache = self.run_config.get("cache")
        if not isinstance(cache, str) or not cache:
            raise RunFolderError(f"{self.path / 'config.json'}: field 'cache' must be the path of the run's cache")
        self.cache = Path(cache)
        relative = self.run_config.get("cache_relative")
        if not self.cache.is_file() and isinstance(relative, str) and (self.path / relative).is_file():
            self.cache = self.path / relative  # the run folder and its cache moved together
        self.fingerprint: dict = self.run_config.get("cache_fingerprint", {})

    def shapes(self) -> dict:
        return {key: value for key, value in self.head_meta.items() if key != "config"}

    def trained_head(self, device: str | torch.device = "cpu"):
        """The selected checkpoint, in eval mode: the weights and head.json the training finished with."""
        model, _, _ = load_head(self.path, device)  # every field and shape checked first, and named when bad
        check_as_finished(self.path, ("model.safetensors", "head.json"))
        return model

    def check_fingerprint_record(self) -> None:
        """config.json's cache fingerprint must be the one training recorded (its sha256 beside it): an edited
        one would make predict preprocess (resize, crop, max length) other than the cache the head learnt from.
        Runs written before the sha256 was recorded (0.10 and earlier) are not checked."""
        recorded = self.run_config.get("cache_fingerprint_sha256")
        if recorded is not None and sha256_json(self.fingerprint) != recorded:
            raise RunFolderError(
                f"{self.path / 'config.json'}: field cache_fingerprint was changed after training (it no longer "
                "matches cache_fingerprint_sha256): the encoders' settings it records are not those the head was "
                "trained on; restore it"
            )

    def untrained_head(self, device: str | torch.device = "cpu"):
        """The head exactly as the trainer initialised it before its first step (same seed, same build), eval mode."""
        torch.manual_seed(self.config.seed)
        return build_head(self.config, self.shapes()).to(device).eval()

    def require_cache(self, why: str) -> Path:
        """The run's cache, when it is there and still the one the run trained on (CacheChanged naming what
        changed, when it was rebuilt otherwise since)."""
        from spp_scl.cache.layout import read_attrs

        if not self.cache.is_file():
            raise RunFolderError(
                f"{why} needs the cache this run trained on, {self.cache}, which is not there "
                "(rebuild it with `spp-scl extract` and the same settings, or restore the file)"
            )
        self.check_fingerprint_record()
        changes = fingerprint_changes(self.fingerprint, read_attrs(self.cache)["fingerprint"])
        if changes:
            more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
            raise CacheChanged(
                f"{self.cache} is not the cache {self.path} trained on (rebuilt since?): "
                + "; ".join(changes[:3])
                + more
                + f"; {why} would read other features: restore that cache, or retrain on this one"
            )
        return self.cache

    def open_split(self, split: str, in_memory: bool | None = None) -> CachedSplit:
        """One split of the run's cache, reading the head's text layers only."""
        from spp_scl.cache.layout import read_attrs

        cache = self.require_cache(f"reading the {split} split")
        cached_layers = read_attrs(cache)["text_layers"]
        missing = [layer for layer in self.text_layers if layer not in cached_layers]
        if missing:
            raise RunFolderError(f"{cache} holds text layers {cached_layers}; the head needs {self.text_layers}")
        positions = [cached_layers.index(layer) for layer in self.text_layers]
        return CachedSplit(cache, split, layers=positions, in_memory=in_memory)

    def cache_splits(self) -> list[str]:
        import h5py

        with h5py.File(self.require_cache("listing the splits"), "r") as file:
            return [split for split in ("train", "dev", "test") if split in file and len(file[split]["ids"])]
