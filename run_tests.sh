#!/usr/bin/env bash
# The test suite (CPU; tiny generated encoders and data, no download). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
exec "$PY" -m pytest -q "$@"
