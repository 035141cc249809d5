#!/usr/bin/env bash
# The main job. With no data configured: the built-in demo (a generated image-text set and tiny random
# encoders, all made locally). With data configured, every dataset given is extracted with the encoders given:
#   MVSA_SINGLE=path/to/mvsa-single MVSA_MULTIPLE=... HFM=...   split folders (train/dev/test.json + images/)
#   TEXT_ENCODER=bert-base-uncased  IMAGE_ENCODER=microsoft/resnet-50   (the paper's; ids, folders or plugins)
#   TEXT_LAYERS=-4,-3,-2,-1         CACHE_DIR=cache/files
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
TEXT_ENCODER=${TEXT_ENCODER:-bert-base-uncased}
IMAGE_ENCODER=${IMAGE_ENCODER:-microsoft/resnet-50}
TEXT_LAYERS=${TEXT_LAYERS:--4,-3,-2,-1}
CACHE_DIR=${CACHE_DIR:-cache/files}

ran=0
for pair in "mvsa-single:${MVSA_SINGLE:-}" "mvsa-multiple:${MVSA_MULTIPLE:-}" "hfm:${HFM:-}"; do
  name=${pair%%:*}; folder=${pair#*:}
  [ -n "$folder" ] || continue
  ran=1
  echo "== extract $name from $folder"
  "$PY" extract/run.py --data "$folder" --dataset "$name" --text-encoder "$TEXT_ENCODER" \
    --text-layers="$TEXT_LAYERS" --image-encoder "$IMAGE_ENCODER" \
    --out "$CACHE_DIR/$name.h5"
done
if [ $ran = 1 ]; then
  echo "caches are in $CACHE_DIR (inspect one with: $PY -m cache.inspect $CACHE_DIR/NAME.h5)"
  exit 0
fi

echo "== DEMO: no data configured (set MVSA_SINGLE=path/to/mvsa-single, see README), running the built-in demo"
"$PY" - <<'PYEOF'
from pathlib import Path
from extract.demo import make_demo_dataset, make_tiny_image_encoder, make_tiny_text_encoder
demo = Path("demo")
if not (demo / "data" / "test.json").exists():
    make_tiny_text_encoder(demo / "text-encoder")
    make_tiny_image_encoder(demo / "image-encoder")
    make_demo_dataset(demo / "data")
    print("generated demo/data (600 / 150 / 150 posts) and tiny random encoders in demo/")
PYEOF
"$PY" extract/run.py --data demo/data --dataset mvsa-single --text-encoder demo/text-encoder \
  --image-encoder demo/image-encoder --out demo/cache/demo.h5
"$PY" -m cache.inspect demo/cache/demo.h5 | head -8
echo "demo cache: demo/cache/demo.h5. This was a demo on generated data; see README for real data."
