"""Read access to a finished run folder (written by runs/train/trainer.py), shared by predict and the diagnostics.

A run folder names the cache it trained on (`config.json`: path and extraction fingerprint) and the head it
selected (`head.json` + `model.safetensors`). Both predict and the diagnostics need the same few things from
it: the selected head, the head as the trainer initialised it, and a cache split read with exactly the text
layers the head uses.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spp_scl.cache.reader import CachedSplit
from spp_scl.core.errors import InputError
from spp_scl.runs.train.checkpoint import build_head, load_head, read_head_meta, read_json_object


class RunFolderError(InputError):
    """A run folder that lacks what is asked of it (a file, its cache, an encoder fingerprint)."""


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        for name in ("config.json", "head.json", "model.safetensors"):
            if not (self.path / name).is_file():
                raise RunFolderError(f"{self.path} is not a finished run folder: it has no {name}")
        # Nothing in these files is trusted: every field is checked before use and a bad one is named.
        self.run_config: dict = read_json_object(self.path / "config.json")
        self.config, shapes = read_head_meta(self.path)
        self.head_meta: dict = {"config": self.config.to_dict(), **shapes}
        self.class_names: list[str] = shapes["class_names"]
        # The absolute encoder layers the head reads: all cached layers, or the last k with text_layers_last.
        self.text_layers: list[int] = shapes["text_layers"]
        cache = self.run_config.get("cache")
        if not isinstance(cache, str) or not cache:
            raise RunFolderError(f"{self.path / 'config.json'}: field 'cache' must be the path of the run's cache")
        self.cache = Path(cache)
        self.fingerprint: dict = self.run_config.get("cache_fingerprint", {})

    def shapes(self) -> dict:
        return {key: value for key, value in self.head_meta.items() if key != "config"}

    def trained_head(self, device: str | torch.device = "cpu"):
        """The selected checkpoint, in eval mode."""
        model, _, _ = load_head(self.path, device)
        return model

    def untrained_head(self, device: str | torch.device = "cpu"):
        """The head exactly as the trainer initialised it before its first step (same seed, same build), eval mode."""
        torch.manual_seed(self.config.seed)
        return build_head(self.config, self.shapes()).to(device).eval()

    def require_cache(self, why: str) -> Path:
        if not self.cache.is_file():
            raise RunFolderError(
                f"{why} needs the cache this run trained on, {self.cache}, which is not there "
                "(rebuild it with `spp-scl extract` and the same settings, or restore the file)"
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
