"""The installed package: every module under the project's own name, every package folder listed."""

from __future__ import annotations

import re

import tomllib

from tests.conftest import ROOT_DIR

LAYER_FOLDERS = {"spp_scl": "spp_scl", "spp_scl.extract": "extract", "spp_scl.cache": "cache", "spp_scl.heads": "heads"}
LAYER_FOLDERS["spp_scl.runs"] = "runs"


def test_every_package_folder_is_installed_under_spp_scl():
    """A new subpackage (a folder with __init__.py) left out of pyproject.toml's list would be missing from a
    wheel while the editable install still found it."""
    setuptools = tomllib.loads((ROOT_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == LAYER_FOLDERS
    found = set()
    for name, folder in LAYER_FOLDERS.items():
        for init in (ROOT_DIR / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT_DIR / folder)
            found.add(".".join((name, *relative.parts)))
    assert sorted(setuptools["packages"]) == sorted(found)


def test_optuna_beyond_its_public_api_is_used_in_the_adapter_only():
    """An Optuna upgrade has one module to check (runs/sweep/optuna_adapter.py): a private attribute or module
    used anywhere else would break unseen behind the version pin."""
    private = re.compile(r"\._(storage|trial_id|study_id)\b|optuna\.[a-z_.]*\._[a-z]")
    offenders = []
    for folder in ("spp_scl", "extract", "cache", "heads", "runs", "bench"):
        for path in (ROOT_DIR / folder).rglob("*.py"):
            if path.name != "optuna_adapter.py" and private.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT_DIR)))
    assert offenders == []
