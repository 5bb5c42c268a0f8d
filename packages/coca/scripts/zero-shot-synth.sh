#!/usr/bin/env bash
# The measured run behind docs/coca.md's zero-shot section: CLIP (tiny preset) trained from scratch with
# `vl train clip` on 1000 synthetic scenes, then `vl eval clip` (retrieval + zero-shot over the three
# backgrounds with prompt ensembling) on the test split. Writes docs/coca-zero-shot.json (the eval
# report) and prints the train summary. Needs `npm run build` first. ~5–10 minutes on 2 cores (wasm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${WORK:-$(mktemp -d)}
VL="node $ROOT/packages/cli/dist/bin.js"
$VL data synth --out "$WORK/data" --images 1000 --seed 0 --size 32 --captions 3 --quiet
$VL train clip --data "$WORK/data" --out "$WORK/clip" --batch-size 32 --epochs 4 --lr 1e-3 --seed 0 --backend wasm --quiet
$VL eval clip --checkpoint "$WORK/clip" --data "$WORK/data/test.jsonl" --task zero-shot --task retrieval \
  --backend wasm --quiet --out "$ROOT/docs/coca-zero-shot.json"
