#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own process.
# Fails if any backend fails. Extra arguments go to pytest.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
status=0
failed=()
for backend in jax tensorflow torch; do
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=3 "$python" -m pytest tests -q -p no:cacheprovider --durations=10 "$@"
  rc=$?
  if [ "$rc" -ne 0 ]; then status=1; failed+=("$backend (pytest exit $rc)"); fi
done
if [ "$status" -ne 0 ]; then
  echo "FAILED on: ${failed[*]}"
else
  echo "all backends passed"
fi
exit "$status"
