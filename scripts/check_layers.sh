#!/usr/bin/env bash
# The import contract (pyproject.toml, [tool.importlinter]): import-linter reads packages from the file system, and
# the editable install maps extract/, cache/, heads/ and runs/ into spp_scl from the repository root, so the check
# runs on a plain (non-editable) install of the tree into a temporary folder, which is what a user gets.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
"$PY" -m pip install -q --no-deps --no-build-isolation --target "$target" . 2>&1 | grep -v "^WARNING: Location" || true
# From inside the installed copy: import-linter puts the working directory first on sys.path.
config=$PWD/pyproject.toml
lint="$(cd "$(dirname "$PY")" && pwd)/lint-imports"
(cd "$target" && "$lint" "$config" --no-cache)
