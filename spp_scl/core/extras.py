"""Optional dependencies, by the extra that installs them (pyproject.toml, [project.optional-dependencies]).

`pip install spp-scl` trains, evaluates and reports from an existing cache with torch, h5py, numpy, safetensors,
scikit-learn, matplotlib, Pillow and tqdm alone. Extraction and prediction run encoders (`[extract]`: transformers,
accelerate), timm backbones need `[timm]`, Hugging Face datasets `[datasets]`, sweeps run on Optuna (`[sweep]`), shared sweep storage needs a database driver
(`[sweeps-db]`), trackers their own packages (`[trackers]`); `[all]` is everything `run_all.sh` uses.
"""

from __future__ import annotations

import importlib

from spp_scl.core.errors import MissingExtra

# module -> (the extra that installs it, what needs it)
EXTRAS = {
    "transformers": ("extract", "the encoders (extract, predict, demo)"),
    "accelerate": ("extract", "extraction across processes, mixed precision and experiment trackers"),
    "optuna": ("sweep", "sweeps"),
    "timm": ("timm", "timm image encoders (--image-encoder timm:NAME)"),
    "datasets": ("datasets", "Hugging Face datasets (--data hf:NAME, a save_to_disk folder)"),
    "psycopg2": ("sweeps-db", "PostgreSQL sweep storage"),
    "pymysql": ("sweeps-db", "MySQL sweep storage"),
    "redis": ("sweeps-db", "Redis sweep storage"),
}


def require(module: str):
    """The module, imported; when it is missing, a MissingExtra naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of its own imports failed: a real error, kept as it is
        extra, needed_by = EXTRAS[module.split(".")[0]]
        raise MissingExtra(
            f"{needed_by} need the Python package {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'spp-scl[{extra}]'"
        ) from None
