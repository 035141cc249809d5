#!/usr/bin/env bash
# The prepared device check (bench/device_check.py): one command on a GPU machine, every figure in one JSON file.
#   bash bench/device_check.sh OUT_FOLDER [device_check.py options, e.g. --parts heads,tests]
# It uses the machine's own python3 (torch, transformers, h5py, scikit-learn, scipy, safetensors, accelerate: a GPU
# image has them) and installs this project into it without dependencies (editable, no build isolation: the
# machine may have no network), unless `import spp_scl.extract` already works. Budget: about 8 minutes on one
# H100-class GPU at the default sizes; writes OUT_FOLDER/device_check.json and the log beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?give the folder for device_check.json}
shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ! python3 -c "import spp_scl.extract" 2>/dev/null; then
  python3 -m pip install -q --no-deps --no-build-isolation -e . \
    || { echo "could not install the project (pip install --no-deps --no-build-isolation -e . needs setuptools>=77)"; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
python3 -m bench.device_check --out "$out/device_check.json" "$@" 2>&1 | tee "$out/device_check.log"
