#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own process.
# Fails if any backend fails. Extra arguments go to pytest.
#
# The three processes run side by side (most of a test's time is
# single-threaded Python, so they share the cores well); each one's output is
# kept in a log and printed whole, in a fixed order, when all have finished.
# GSMOOTH_TEST_PARALLEL=0 runs them one after another, printing as they go.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
backends=(jax tensorflow torch)

run_backend() {
  KERAS_BACKEND=$1 TF_CPP_MIN_LOG_LEVEL=3 "$python" -m pytest tests -q -p no:cacheprovider --durations=10 "${@:2}"
}

declare -A exit_code
if [ "${GSMOOTH_TEST_PARALLEL:-1}" = 0 ]; then
  for backend in "${backends[@]}"; do
    echo "=== KERAS_BACKEND=$backend ==="
    run_backend "$backend" "$@"
    exit_code[$backend]=$?
  done
else
  logs=$(mktemp -d)
  trap 'rm -rf "$logs"' EXIT
  declare -A pid
  for backend in "${backends[@]}"; do
    run_backend "$backend" "$@" > "$logs/$backend.log" 2>&1 &
    pid[$backend]=$!
  done
  echo "running the suite on ${backends[*]} side by side ($(date +%T))"
  for backend in "${backends[@]}"; do
    wait "${pid[$backend]}"
    exit_code[$backend]=$?
  done
  for backend in "${backends[@]}"; do
    echo "=== KERAS_BACKEND=$backend ==="
    cat "$logs/$backend.log"
  done
fi

failed=()
for backend in "${backends[@]}"; do
  if [ "${exit_code[$backend]}" -ne 0 ]; then failed+=("$backend (pytest exit ${exit_code[$backend]})"); fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "all backends passed"
