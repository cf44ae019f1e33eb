"""Every benchmark of keras-gsmooth, on every backend, into one Markdown page and one CSV.

Usage: `python benchmarks/suite.py [--quick] [--backends jax tensorflow torch] [--out DIR]`

Each backend runs in its own process (`KERAS_BACKEND` set per process), which
measures, interleaved and as medians over repeated runs:

- the train step of the paper CNN at batch 128 and 1: plain, explicit
  (closed-form smoothing, every penalty on), two references (the plain
  network with XLA on TensorFlow, and with silu for relu) and Monte-Carlo
  smoothing (`montecarlo_cost.py`);
- the error of each Monte-Carlo gradient against the exact smoothed
  gradient on a linear model, and its cost (`montecarlo_accuracy.py`);
- the memory of one train step, each candidate in a fresh process
  (`memory.py`).

The full run writes `docs/benchmarks.md` (the documentation's page) and
`docs/benchmarks.csv`. It takes several minutes per backend: run it on a
quiet machine. `--quick` runs every benchmark with tiny settings (seconds
per benchmark; the numbers mean nothing) and writes to a temporary
directory unless `--out` is given.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import report  # noqa: E402

BACKENDS = ("jax", "tensorflow", "torch")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the suite measures, and how often.

    Attributes:
        name: "full" or "quick" (printed on the page).
        batches: Batch sizes of the train-step benchmark.
        montecarlo: `(method, K)` of the Monte-Carlo train-step candidates.
        rounds: Timed steps per train-step candidate.
        warmup: Untimed steps per candidate after its first call.
        accuracy_samples: The K values of the accuracy benchmark.
        accuracy_estimators: Its `(method, antithetic)` pairs.
        accuracy_seeds: Independent estimates per K.
        accuracy_rounds: Timed steps per candidate of the accuracy benchmark.
        identity_draws: Float64 samples for the identity check.
        memory_batch: Batch size of the memory benchmark.
        memory_candidates: Candidate keys of the memory benchmark, plain first.
    """

    name: str
    batches: tuple
    montecarlo: tuple
    rounds: int
    warmup: int
    accuracy_samples: tuple
    accuracy_estimators: tuple
    accuracy_seeds: int
    accuracy_rounds: int
    identity_draws: int
    memory_batch: int
    memory_candidates: tuple


FULL = Settings(
    name="full",
    batches=(128, 1),
    montecarlo=(("first_order", 1), ("first_order", 4), ("first_order", 16), ("zero_order", 16), ("zero_order", 64)),
    rounds=10,
    warmup=2,
    accuracy_samples=(1, 4, 16, 64),
    accuracy_estimators=(("first_order", False), ("first_order", True), ("zero_order", False), ("zero_order", True)),
    accuracy_seeds=10,
    accuracy_rounds=10,
    identity_draws=2000,
    memory_batch=128,
    memory_candidates=(
        "plain", "explicit", "mc-first_order-1", "mc-first_order-4", "mc-first_order-16", "mc-zero_order-16", "mc-zero_order-64",
    ),
)
QUICK = Settings(
    name="quick",
    batches=(16, 1),
    montecarlo=(("first_order", 2),),
    rounds=2,
    warmup=1,
    accuracy_samples=(2,),
    accuracy_estimators=(("first_order", False), ("zero_order", False)),
    accuracy_seeds=2,
    accuracy_rounds=2,
    identity_draws=200,
    memory_batch=8,
    memory_candidates=("plain", "mc-first_order-2"),
)


def _progress(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_backend(settings: Settings) -> dict:
    """Runs every benchmark on the current Keras backend, in this process.

    Returns:
        A JSON-serializable dict: `backend`, `versions`, `parameters` (of
        the paper CNN), `train_step` (batch -> rows of
        `montecarlo_cost.measure`), `accuracy` (the result of
        `montecarlo_accuracy.measure`), `memory` (`batch` and the rows of
        `memory.measure`) and `elapsed_s`.
    """
    # Keras is imported here, never in the parent process, which runs no backend.
    import importlib

    import keras
    import memory
    import montecarlo_accuracy
    import montecarlo_cost

    import keras_gsmooth

    start = time.perf_counter()
    backend = keras.backend.backend()
    module = importlib.import_module(backend)
    result = {
        "backend": backend,
        "versions": {"keras": keras.__version__, backend: module.__version__},
        "parameters": keras_gsmooth.models.paper_cnn().count_params(),
        "train_step": {},
    }
    for batch in settings.batches:
        _progress(f"{backend}: train step, batch {batch}")
        result["train_step"][str(batch)] = montecarlo_cost.measure(
            batch, settings.montecarlo, rounds=settings.rounds, warmup=settings.warmup
        )
    _progress(f"{backend}: gradient accuracy")
    result["accuracy"] = montecarlo_accuracy.measure(
        settings.accuracy_samples,
        settings.accuracy_seeds,
        settings.accuracy_rounds,
        settings.warmup,
        settings.identity_draws,
        settings.accuracy_estimators,
    )
    _progress(f"{backend}: memory, batch {settings.memory_batch}")
    result["memory"] = {
        "batch": settings.memory_batch,
        "rows": memory.measure(list(settings.memory_candidates), settings.memory_batch),
    }
    result["elapsed_s"] = time.perf_counter() - start
    return result


def run_all(settings: Settings, backends: list) -> list:
    """Runs `run_backend` in one fresh process per backend.

    Raises:
        RuntimeError: if a backend's process fails.
    """
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for backend in backends:
            output = os.path.join(scratch, f"{backend}.json")
            command = [sys.executable, os.path.abspath(__file__), "--worker", output]
            if settings.name == QUICK.name:
                command.append("--quick")
            environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
            _progress(f"{backend}: starting")
            completed = subprocess.run(command, env=environment, cwd=ROOT)
            if completed.returncode != 0:
                raise RuntimeError(
                    f"benchmarks/suite.py: the {backend} process failed (exit status "
                    f"{completed.returncode}); its output is above."
                )
            with open(output) as file:
                results.append(json.load(file))
    return results


def machine() -> dict:
    """A description of the machine the numbers come from."""
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        processor = names[0] if names else processor
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": processor,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load": " / ".join(f"{value:.1f}" for value in os.getloadavg()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check that everything runs")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="backends to run")
    parser.add_argument("--out", help="output directory (default: docs/, or a temporary directory with --quick)")
    parser.add_argument("--worker", metavar="JSON", help="internal: run the current backend and write its results")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.worker:
        with open(args.worker, "w") as file:
            json.dump(run_backend(settings), file)
        return
    out = args.out
    if out is None:
        out = os.path.join(tempfile.gettempdir(), "keras-gsmooth-benchmarks") if args.quick else os.path.join(ROOT, "docs")
    started = machine()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    results = run_all(settings, args.backends)
    command = "python benchmarks/suite.py" + (" --quick" if args.quick else "") + (
        "" if list(args.backends) == list(BACKENDS) else " --backends " + " ".join(args.backends)
    )
    context = {"machine": started, "date": date, "command": command, "load_after": machine()["load"]}
    markdown, table = report.write(results, settings, out, context)
    print(f"wrote {markdown} and {table}")


if __name__ == "__main__":
    main()
