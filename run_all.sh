#!/usr/bin/env bash
# The main job: extraction, training, a tau / theta / lambda sweep, the paper's tables and plots.
#
# With no data configured it runs the built-in DEMO: a generated image-text set (labels in the text only, in the
# image only, or only in both together) and tiny random encoders, all made locally, in a few minutes on 2 cores.
#
# Real data: set a split folder (train/dev/test.json + images/) per dataset, and the encoders:
#   MVSA_SINGLE=path MVSA_MULTIPLE=path HFM=path
#   TEXT_ENCODER=bert-base-uncased IMAGE_ENCODER=microsoft/resnet-50 TEXT_LAYERS=-4,-3,-2,-1   (the paper's)
#   OUT=runs/out/all  CACHE_DIR=cache/files  SEEDS=5  SWEEP_SEEDS=1  JOBS=1  EPOCHS=(preset: 150)
#   PRUNE=successive-halving (the sweep's pruner on the dev metric per epoch; hyperband, or none to train every
#   point for every epoch)  PATIENCE=20 (epochs without a better dev metric before a trial stops; none = never)
# For each dataset present: extraction, a 3 x 3 x 3 sweep of tau / theta / lambda on dev, then every table
# (5 seeds each) from the sweep's best point, with plots. Rerunning skips every finished step.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh

SPP="$VENV/bin/spp-scl"
stage() { echo "== $*"; }

if [ -z "${MVSA_SINGLE:-}${MVSA_MULTIPLE:-}${HFM:-}" ]; then
  # The demo's sizes, epochs, seeds and jobs; `spp-scl demo --help` says what it does.
  exec "$SPP" demo --dir "${DEMO_DIR:-demo}" --sizes "${DEMO_SIZES:-600,150,150}" --epochs "${DEMO_EPOCHS:-8}" \
    --seeds "${DEMO_SEEDS:-2}" --jobs "${DEMO_JOBS:-2}"
fi

TEXT_ENCODER=${TEXT_ENCODER:-bert-base-uncased}
IMAGE_ENCODER=${IMAGE_ENCODER:-microsoft/resnet-50}
TEXT_LAYERS=${TEXT_LAYERS:--4,-3,-2,-1}
CACHE_DIR=${CACHE_DIR:-cache/files}
OUT=${OUT:-runs/out/all}
SEEDS=${SEEDS:-5}
SWEEP_SEEDS=${SWEEP_SEEDS:-1}
JOBS=${JOBS:-1}
PRUNE=${PRUNE:-successive-halving}
PATIENCE=${PATIENCE:-20}
settings=()
mkdir -p "$OUT"
[ -n "${EPOCHS:-}" ] && settings+=(--set epochs="$EPOCHS")
caches=(); bases=()
for pair in "mvsa-single:${MVSA_SINGLE:-}" "mvsa-multiple:${MVSA_MULTIPLE:-}" "hfm:${HFM:-}"; do
  name=${pair%%:*}; folder=${pair#*:}
  [ -n "$folder" ] || continue
  stage "$name: extract from $folder"
  "$SPP" extract --data "$folder" --dataset "$name" --text-encoder "$TEXT_ENCODER" --text-layers="$TEXT_LAYERS" \
    --image-encoder "$IMAGE_ENCODER" --out "$CACHE_DIR/$name.h5"
  lambdas=3,5,8; [ "$name" = hfm ] && lambdas=5,10,15
  stage "$name: sweep tau x theta x lambda (3 x 3 x 3, $SWEEP_SEEDS seed(s)) on dev"
  "$SPP" sweep --cache "$CACHE_DIR/$name.h5" --preset "$name" --axis tau=0.05,0.07,0.1 \
    --axis theta=0.5,0.667,0.8 --axis lambda="$lambdas" --seeds "$SWEEP_SEEDS" --jobs "$JOBS" ${settings[@]+"${settings[@]}"} \
    --set patience="$PATIENCE" --prune "$PRUNE" --out "$OUT/$name/sweep" > "$OUT.$name.sweep.log" 2>&1 || { cat "$OUT.$name.sweep.log"; exit 1; }
  caches+=(--cache "$name=$CACHE_DIR/$name.h5"); bases+=(--base "$name=$OUT/$name/sweep/summary.json")
done
stage "the paper's tables 3-7, $SEEDS seeds each, from each sweep's best point"
"$SPP" tables "${caches[@]}" "${bases[@]}" --seeds "$SEEDS" --jobs "$JOBS" ${settings[@]+"${settings[@]}"} \
  --out "$OUT/tables"
stage "SPP-SCL beside CLMLF-style, MDSE-style, text-only and image-only heads, $SEEDS seeds each"
"$SPP" compare "${caches[@]}" --seeds "$SEEDS" --jobs "$JOBS" ${settings[@]+"${settings[@]}"} --out "$OUT/compare"
echo "done. Tables: $OUT/tables/table{3,4,5,6,7}.md; comparison: $OUT/compare/comparison.md;" \
     "sweeps (summary.md, plots): $OUT/<dataset>/sweep/"
