"""timm for the tests, in an environment whose torch has no matching torchvision wheel.

timm's models do not run torchvision; timm imports it for its data pipeline (transforms, datasets) and to freeze
BatchNorm layers, neither of which the encoders here use (they preprocess with Pillow, from the weights' own
config). Where torchvision cannot be imported, timm is imported with inert stand-in modules for it, which are taken
out of sys.modules again at once, so that nothing else (transformers' image utilities) can take them for
torchvision. Where torchvision works, nothing is stood in.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

import pytest


class _Inert(type):
    """Classes whose every attribute is another inert class (timm reads constants such as InterpolationMode.NEAREST
    at import)."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(name, (), {})


class _StandIn(types.ModuleType):
    """A torchvision module whose every attribute is an inert class: enough for timm's imports, nothing to run."""

    __path__: list[str] = []  # a package, so that `import torchvision.ops.misc` looks for submodules

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(name, (), {"__module__": self.__name__})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StandIn(spec.name)

    def exec_module(self, module):
        pass


def import_timm():
    """timm, or a skip that says why it is missing."""
    pytest.importorskip("transformers")  # imported first: its torchvision check must not see the stand-in
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a wheel built for another torch (RuntimeError: operator ... does not exist)
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]
        finder = _StandInFinder()
        sys.meta_path.insert(0, finder)
        try:
            return pytest.importorskip("timm", reason="timm is not installed (pip install 'spp-scl[timm]')")
        finally:
            sys.meta_path.remove(finder)
            for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
                del sys.modules[name]
    return pytest.importorskip("timm", reason="timm is not installed (pip install 'spp-scl[timm]')")
