#!/usr/bin/env bash
# The GPU measurement of issue 6: the tutorial convnet at T = 60 on one GPU, JAX backend.
# For a machine with jax + CUDA but no TensorFlow or Keras (the project's device machine):
# keras and its small missing dependencies travel as wheels in .whl/ (see docs/performance.md).
# Usage, from the repository root:  OUT=/some/dir bash benchmarks/gpu_h200.sh
# (BATCH, IMAGE_FACTOR and ROUNDS override 1000, 20 and 3, e.g. for a smoke run on a CPU.)
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export KERAS_BACKEND=jax PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv || true
python3 benchmarks/bench.py --networks tutorial_convnet --only plain,converted,layerwise,td_rnn \
    --steps-only 60 --batch "${BATCH:-1000}" --image-factor "${IMAGE_FACTOR:-20}" \
    --rounds "${ROUNDS:-3}" --out "$OUT" 2>&1 | tee "$OUT/gpu_log.txt"
