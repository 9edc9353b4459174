#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own pytest process (Keras picks
# its backend at import), and prints how long each run took.
#
# Usage:  bash ci/test_all_backends.sh [BACKEND ...]     (default: tensorflow jax torch)
#         PYTEST_ARGS="tests/test_lowpass.py -x" bash ci/test_all_backends.sh jax
#
# Needs the test extra installed: pip install ".[test]" (it brings jax and torch).
# A run fails if pytest fails, if it ran on another backend than asked (KERAS_BACKEND
# ignored), or if it passed no test at all (everything skipped or deselected).
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"

backends=("$@")
if [ ${#backends[@]} -eq 0 ]; then
    backends=(tensorflow jax torch)
fi
read -r -a extra <<<"${PYTEST_ARGS:-}"

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT
summary=()
failed=0
for backend in "${backends[@]}"; do
    echo "=== KERAS_BACKEND=$backend: python -m pytest -q ${extra[*]:-}"
    log="$log_dir/$backend.log"
    start=$(date +%s)
    KERAS_BACKEND="$backend" python -m pytest -q "${extra[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    seconds=$(($(date +%s) - start))
    result="rc=$rc"
    if [ "$rc" -eq 0 ] && ! grep -q "^keras backend: $backend " "$log"; then
        result="ran on the wrong backend"
        rc=1
    elif [ "$rc" -eq 0 ] && ! grep -Eq "[0-9]+ passed" "$log"; then
        result="no test passed"
        rc=1
    elif [ "$rc" -eq 0 ]; then
        result="$(grep -E "[0-9]+ passed" "$log" | tail -n 1 | tr -d '=' | xargs)"
    fi
    [ "$rc" -eq 0 ] || failed=1
    summary+=("$(printf '%-10s %5ss  %s' "$backend" "$seconds" "$result")")
done

echo "=== test time per backend"
printf '%s\n' "${summary[@]}"
exit "$failed"
