"""Peak memory of one train step of the paper CNN, per candidate, each in a fresh process.

Usage: `KERAS_BACKEND=jax python benchmarks/memory.py [--batch 128] [--candidates plain explicit mc-first_order-16]`

Every candidate of `candidates.py` runs in its own Python process (same
backend), so that no candidate inherits another's heap. "Step memory" is
what one train step needs on top of what the process already holds
(weights, optimizer state, compiled code), measured per backend by the
method that sees it:

- jax: XLA's buffer assignment for the compiled train step (the Keras
  `train_step`, jitted with the state donated as Keras does):
  `temp_size_in_bytes + output_size_in_bytes − alias_size_in_bytes` of
  `compiled.memory_analysis()`. It is exact for that executable, but it is
  not a run-time measurement: XLA's CPU client keeps freed buffers, so the
  process's resident set size does not show the step's buffers.
- tensorflow and torch: the kernel's peak resident set size. The process
  builds its model and runs two warm-up steps (the first one compiles on
  tensorflow), reads its VmRSS, resets the peak mark (VmHWM) by
  writing 5 to /proc/self/clear_refs, runs one step and reads VmHWM; the
  step memory is the difference. glibc's malloc is told to serve every
  block of 64 KiB or more with mmap and to give freed memory back at once
  (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_), so that the measured step
  cannot silently reuse buffers freed by the warm-up. On tensorflow,
  oneDNN is turned off (TF_ENABLE_ONEDNN_OPTS=0) in these processes only:
  its allocator pools freed blocks and hides them the same way.

The process's lifetime peak (getrusage's ru_maxrss, imports and
compilation included) is reported too. Linux only.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from candidates import Candidate  # noqa: E402
from candidates import build  # noqa: E402
from candidates import candidate_step  # noqa: E402
from suite import FULL  # noqa: E402

MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
BACKEND_SETTINGS = {"tensorflow": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
WARMUP_STEPS = 2
METHODS = {
    "jax": "XLA buffer assignment (temp + output − donated)",
    "tensorflow": "peak RSS during the step (VmHWM reset), oneDNN off",
    "torch": "peak RSS during the step (VmHWM reset)",
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"benchmarks/memory.py: /proc/self/status has no {field} line; this benchmark needs Linux.")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError as error:
        raise RuntimeError(
            "benchmarks/memory.py: cannot reset the peak resident set size "
            f"through /proc/self/clear_refs ({error}); this benchmark needs "
            "Linux 4.0 or later and a writable /proc."
        ) from error


def _xla_step_bytes(model, batch: int) -> int:
    """The bytes XLA assigns to one compiled train step beyond its donated state.

    Builds the model's optimizer and loss as `train_on_batch` does, from the
    batch's shapes, then compiles the Keras train step once, without running it.
    """
    import jax

    data = (
        jax.ShapeDtypeStruct((batch, 28, 28, 1), "float32"),
        jax.ShapeDtypeStruct((batch, 10), "float32"),
        None,
    )
    model._symbolic_build(data_batch=data)
    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
        purge_model_variables=False,
    )
    analysis = jax.jit(model.train_step, donate_argnums=0).lower(state, data).compile().memory_analysis()
    return analysis.temp_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes


def _rss_step_bytes(step) -> int:
    """The peak resident set size during one call of `step`, above the size before it."""
    before = _status_kib("VmRSS")
    _reset_peak()
    step()
    return (_status_kib("VmHWM") - before) * 1024


def measure_in_this_process(key: str, batch: int) -> dict:
    """Builds candidate `key` and measures the memory of one of its train steps.

    Meant for a fresh process (see `measure`), started with the environment
    settings of this module.

    Returns:
        A dict with `key`, `candidate` (its label), `step_mb` (see the
        module docstring), `method`
        and `process_peak_mb` (the process's lifetime peak RSS).
    """
    backend = keras.backend.backend()
    candidate = Candidate.parse(key)
    (model,) = build([candidate]).values()
    if backend == "jax":
        step_bytes = _xla_step_bytes(model, batch)
    else:
        step = candidate_step(candidate, model, batch)
        for _ in range(WARMUP_STEPS):
            step()
        step_bytes = _rss_step_bytes(step)
    return {
        "key": key,
        "candidate": candidate.label,
        "step_mb": step_bytes / 2**20,
        "method": METHODS[backend],
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(keys: list, batch: int) -> list:
    """Peak memory of one train step of each candidate, each in a fresh process.

    The processes inherit the environment (so `KERAS_BACKEND`) plus the
    settings of this module (malloc; oneDNN off on tensorflow).

    Args:
        keys: Candidate keys (`candidates.Candidate.key`), plain first.
        batch: The batch size.

    Returns:
        The dicts of `measure_in_this_process`, in order, each with `ratio`
        (step memory over the first candidate's) added.

    Raises:
        RuntimeError: if a child process fails; its stderr is included.
    """
    environment = dict(os.environ, **MALLOC_SETTINGS, **BACKEND_SETTINGS.get(keras.backend.backend(), {}))
    rows = []
    for key in keys:
        command = [sys.executable, os.path.abspath(__file__), "--child", key, "--batch", str(batch)]
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"benchmarks/memory.py: measuring {key!r} failed:\n{result.stderr[-4000:]}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    for row in rows:
        row["ratio"] = row["step_mb"] / rows[0]["step_mb"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=FULL.memory_batch, help="batch size")
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=list(FULL.memory_candidates),
        help="candidate keys, the baseline first",
    )
    parser.add_argument("--child", metavar="KEY", help="internal: measure KEY in this process and print JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_in_this_process(args.child, args.batch)))
        return
    print(f"step memory, {keras.backend.backend()}, batch {args.batch}: {METHODS[keras.backend.backend()]}")
    print("| candidate | step memory (MB) | × plain | process peak (MB) |")
    print("|---|---:|---:|---:|")
    for row in measure(args.candidates, args.batch):
        print(f"| {row['candidate']} | {row['step_mb']:.1f} | {row['ratio']:.2f} | {row['process_peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
