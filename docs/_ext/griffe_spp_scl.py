"""Griffe extensions for the API pages (mkdocs.yml): the subpackages setuptools maps, and prose docstrings.

`PackageDir`: pyproject.toml maps `spp_scl.cache` to `cache/`, `spp_scl.extract` to `extract/` and so on
(`package-dir`). An installed wheel has them under `spp_scl/`, but Griffe reads an editable install's `spp_scl/`
folder only and finds no `spp_scl.cache`. This extension asks the import system where each sibling folder of
`spp_scl/` is imported from (without importing the folder) and, when that is `spp_scl.<folder>`, reads its sources
into the package.

`ProseDocstrings`: the docstrings here are plain prose, not Markdown. Rendered as they are, a placeholder such as
`<run>/report.md` is taken for an HTML tag and vanishes, a `*` starts emphasis, and an indented block after a line
ending in a colon (a file layout, a listing) runs into the paragraph. This extension escapes those characters outside
code spans and code blocks, and puts a blank line before such a block so that it renders as code.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import griffe


class PackageDir(griffe.Extension):
    """Attach the mapped subpackages of a loaded package that Griffe did not find under its folder."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if not isinstance(pkg.filepath, Path) or pkg.filepath.name != "__init__.py":
            return
        root = pkg.filepath.parent.parent
        if not (root / "pyproject.toml").is_file():  # an installed package, or one read from site-packages
            return
        for folder in sorted(root.iterdir()):
            if folder.name in pkg.members or not (folder / "__init__.py").is_file():
                continue
            try:
                spec = importlib.util.find_spec(f"{pkg.name}.{folder.name}")
            except ImportError:
                continue
            locations = list(spec.submodule_search_locations or []) if spec else []
            if any(Path(location).resolve() == folder.resolve() for location in locations):
                _visit_package(folder.name, folder, pkg, loader)


def _visit_package(name: str, folder: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> None:
    package = _visit(name, folder / "__init__.py", parent, loader)
    for path in sorted(folder.iterdir()):
        if path.suffix == ".py" and path.name != "__init__.py":
            _visit(path.stem, path, package, loader)
        elif (path / "__init__.py").is_file():
            _visit_package(path.name, path, package, loader)


def _visit(name: str, path: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> griffe.Module:
    code = path.read_text(encoding="utf-8-sig")
    loader.lines_collection[path] = code.splitlines(keepends=False)
    module = griffe.visit(
        name,
        filepath=path,
        code=code,
        parent=parent,
        extensions=loader.extensions,
        docstring_parser=loader.docstring_parser,
        docstring_options=loader.docstring_options,
        lines_collection=loader.lines_collection,
        modules_collection=loader.modules_collection,
    )
    parent.set_member(name, module)
    return module


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+\.)\s")


class ProseDocstrings(griffe.Extension):
    """Render plain-prose docstrings as they read: placeholders, stars and indented listings kept."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = prose_to_markdown(obj.docstring.value)


def prose_to_markdown(text: str) -> str:
    """The Markdown that shows `text` as it reads in the source."""
    lines: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.startswith("    "):
            previous = lines[-1] if lines else ""
            if in_code or not previous.strip():
                in_code = True
            elif previous.endswith(":") and not previous.startswith(" ") and not _LIST_ITEM.match(previous):
                lines.append("")
                in_code = True
            if in_code:
                lines.append(line)
                continue
        elif line.strip():
            in_code = False
        lines.append(_escaped(line))
    return "\n".join(lines)


def _escaped(line: str) -> str:
    parts = []
    end = 0
    for span in _CODE_SPAN.finditer(line):
        parts.append(_escaped_text(line[end : span.start()]))
        parts.append(span.group(0))
        end = span.end()
    parts.append(_escaped_text(line[end:]))
    escaped = "".join(parts)
    return "\\" + escaped if escaped.lstrip().startswith(("#", ">")) else escaped


def _escaped_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("*", "\\*")
