"""spp-scl: image-text sentiment analysis around SPP-SCL (AAAI 2026).

The library lives in four packages that data flows through in one direction:
`extract` (datasets, frozen encoders) -> `cache` (HDF5 layout, reader) -> `heads` (SPP-SCL and the compared
heads, their losses) -> `runs` (training, sweeps, tables, prediction, reports). This package holds what they
share (the version, the error kinds and their exit codes) and the `spp-scl` command line (`spp_scl.cli`).

The Python API (`spp_scl.api`), here as functions that import it only when called, so that `import spp_scl` is
fast and the extras stay optional:

    cache = spp_scl.extract("posts.csv", "cache/files/posts.h5")
    run = spp_scl.train(cache, "runs/out/posts", epochs=40, patience=10, lr=1e-3)
    spp_scl.load_run("runs/out/posts").predict([{"image": "photo.jpg", "text": "what a day"}])
    spp_scl.evaluate(run, "labelled.csv")
"""

from __future__ import annotations

import sys
import types

__version__ = "0.10.0"
__all__ = ["__version__", "evaluate", "extract", "load_run", "train"]


def __getattr__(name: str):
    """`spp_scl.extract` before the extraction package of that name is imported: `spp_scl.api.extract` (the encoder
    pass that writes the feature cache; its path). Not a `def extract` here, which would hide the package."""
    if name == "extract":
        from spp_scl.api import extract

        return extract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _ExtractPackage(types.ModuleType):
    """`spp_scl.extract` is also the name of the extraction package: once it is imported (which sets the name on
    this package), the package itself is called as `spp_scl.api.extract` is."""

    def __call__(self, data, out=None, **settings):
        from spp_scl.api import extract

        return extract(data, out, **settings)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name == "extract" and type(value) is types.ModuleType:
            value.__class__ = _ExtractPackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def train(cache, out, preset=None, **fields):
    """See `spp_scl.api.train`: train a head from a cache into the run folder `out`; the `Run`."""
    from spp_scl.api import train

    return train(cache, out, preset, **fields)


def load_run(path):
    """See `spp_scl.api.load_run`: a finished run folder as a `Run` (path, config, metrics, predict)."""
    from spp_scl.api import load_run

    return load_run(path)


def evaluate(run, pairs, **options):
    """See `spp_scl.api.evaluate`: metrics of a run on labelled pairs (a file or a list of dicts)."""
    from spp_scl.api import evaluate

    return evaluate(run, pairs, **options)
