#!/bin/bash
# Indexing on a many-core machine with a GPU, this version beside a previous one, in one run
# (docs/benchmarks.md, "On a GPU"). Needs python3 with semsearch's dependencies and a CUDA torch.
#
#   benchmarks/cores_and_gpu.sh PREVIOUS_CHECKOUT [SCIFACT_DIR] [DOCS]
#
# 1. the first DOCS SciFact abstracts (default 800) as a folder of .txt files, `semsearch index`ed
#    with the GPU hidden, by this version and the previous one, twice each, alternating;
# 2. `semsearch eval` of the whole of SciFact by this version with the GPU hidden;
# 3. the same by both versions on the GPU (no flag: the device is chosen as a user's run chooses it).
# Wall and CPU time come from bash's `time`; "Indexed ..." lines are eval's own embedding time.
# FOLDER_ONLY=1 stops after step 1 (a quick check on a machine without a GPU).
set -u
TIMEFORMAT='wall %R s, user %U s, sys %S s'
REPO=$(cd "$(dirname "$0")/.." && pwd)
PREVIOUS=$(cd "${1:?give a checkout of the previous version}" && pwd)
SCIFACT=$(cd "${2:-$REPO/../shared/data/beir/scifact}" && pwd)
DOCS=${3:-800}
WORK=$(mktemp -d)
OUTPUT=${OUT:-$WORK}
trap 'rm -rf "$WORK/sub" "$WORK"/i-* "$WORK"/eval-*' EXIT
for name in current previous; do  # import semsearch from each checkout, with its migrations inside
  src=$([ $name = current ] && echo "$REPO" || echo "$PREVIOUS")
  mkdir -p "$WORK/$name/semsearch"
  for entry in "$src"/semsearch/*; do ln -s "$entry" "$WORK/$name/semsearch/"; done
  ln -sfn "$src/migrations" "$WORK/$name/semsearch/migrations"
done
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
PYTHONPATH=$WORK/current python3 - "$SCIFACT" "$WORK/sub" "$DOCS" <<'PY'
import json, pathlib, sys
corpus, folder, docs = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
folder.mkdir()
for i, line in enumerate(open(corpus + "/corpus.jsonl")):
    if i == docs:
        break
    d = json.loads(line)
    (folder / f"{d['_id']}.txt").write_text(d["title"] + "\n\n" + d["text"] + "\n")
# The ONNX export CPU indexing uses, made once as a machine's first index makes it.
import semsearch
with semsearch.open(str(folder.parent / "i-warm"), device="cpu") as engine:
    engine.add_texts(["warming the cache"])
PY
echo "cores: $(nproc)"; nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
run() {  # label version semsearch-arguments...
  local label=$1 version=$2; shift 2
  echo "== $label"
  { time (cd "$WORK" && PYTHONPATH=$WORK/$version python3 -m semsearch "$@" >"$OUTPUT/$label.out" 2>"$OUTPUT/$label.err"); } 2>&1
  grep -hE 'Indexed|^(semantic|keyword|hybrid) |Error' "$OUTPUT/$label.out" "$OUTPUT/$label.err"
}
for round in 1 2; do
  CUDA_VISIBLE_DEVICES=-1 run current-folder-$round current index "$WORK/sub" --index "$WORK/i-current-$round"
  CUDA_VISIBLE_DEVICES=-1 run previous-folder-$round previous index "$WORK/sub" --index "$WORK/i-previous-$round"
done
[ "${FOLDER_ONLY:-0}" = 1 ] && exit 0
CUDA_VISIBLE_DEVICES=-1 run current-eval-cpu current eval "$SCIFACT" --index "$WORK/eval-cpu"
run current-eval-gpu current eval "$SCIFACT" --index "$WORK/eval-gpu"
run previous-eval-gpu previous eval "$SCIFACT" --index "$WORK/eval-gpu-previous"
