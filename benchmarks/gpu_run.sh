#!/usr/bin/env bash
# One-shot GPU training benchmark on a machine with JAX (CUDA) and PyTorch but
# no TensorFlow, no Keras and no network. Run from the repository root with
# `.gpu/` beside it (git-ignored):
#   .gpu/whl/       keras (the version in requirements/constraints.txt), namex,
#                   optree (cp312 manylinux) and typing_extensions wheels
#   .gpu/data/multi30k/   a copy of shared/data/multi30k
#
#   OUT=/tmp/out bash benchmarks/gpu_run.sh [bench_gpu_training.py arguments]
# e.g. --max-seconds 270 --deadline 530 --torch-seconds 60
# Results: $OUT/gpu_bench.json, $OUT/gpu_bench.log (OUT defaults to ./gpu_out).
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
SITE="${GPU_BENCH_SITE:-/tmp/site}"
wheels=(.gpu/whl/keras-*.whl .gpu/whl/namex-*.whl .gpu/whl/optree-*.whl)
# typing_extensions (optree needs it) only where the machine lacks it.
python3 -c "import typing_extensions" 2>/dev/null || wheels+=(.gpu/whl/typing_extensions-*.whl)
PYTHON="${PYTHON:-python3}"
if [ -z "${GPU_BENCH_NO_INSTALL:-}" ]; then  # (set it where Keras is installed already)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${wheels[@]}" \
    && export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export KERAS_BACKEND=jax
{
  nvidia-smi -L || true
  $PYTHON - <<'EOF'
import importlib.util, sys
print("python", sys.version.split()[0])
for name in ("jax", "keras", "torch", "sentencepiece", "sacrebleu", "h5py", "yaml", "tensorflow"):
    spec = importlib.util.find_spec(name)
    version = "-"
    if spec is not None and name != "tensorflow":
        module = __import__(name)
        version = getattr(module, "__version__", "?")
    print(f"{name}: {'absent' if spec is None else version}")
EOF
} 2>&1 | tee -a "$OUT/gpu_bench.log"
exec $PYTHON benchmarks/bench_gpu_training.py --data-dir .gpu/data/multi30k "$@"
