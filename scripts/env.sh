# Sourced by run_all.sh and run_tests.sh: create or reuse the local virtual environment (.venv, or $VENV)
# and install the project into it (requirements.txt: the pinned torch, then `pip install -e .[dev]`; then
# scripts/requirements-no-deps.txt without dependencies) when one of those files or pyproject.toml changed since the
# last install. Sets PY.
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating the virtual environment $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(cat requirements.txt scripts/requirements-no-deps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the project (requirements.txt, pyproject.toml) into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-deps -r scripts/requirements-no-deps.txt
  echo "$want" > "$stamp"
fi
PY="$VENV/bin/python"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
