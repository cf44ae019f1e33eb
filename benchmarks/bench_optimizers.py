"""Steps per second of the GSmooth optimizers against Keras's SGD and Adam, on the paper CNN.

Every configuration trains `keras_gsmooth.smooth_model(paper_cnn())` with
MSE on random MNIST-shaped data:

- `plain_sgd` / `plain_adam`: Keras's optimizers on the plain CNN (what
  smoothing costs on top);
- `sgd` / `adam`: Keras's optimizers on the smoothed model at a fixed σ
  (the baseline: fixed-σ training);
- `gsmooth_sgd` / `gsmooth_adam`: the GSmooth optimizers with a σ schedule
  running (ExponentialDecay, evaluated in every step);
- `gsmooth_svrg`: GSmoothSVRG with the same schedule (two gradients per
  step); its snapshot, over one batch of data, is taken once per timed
  `fit` and is included in the time.

Configurations are interleaved (one timed `fit` of each per round, in a
random order each round) so that the load of a shared machine spreads over
all of them. Steps per second are medians over rounds; the ratio to the
fixed-σ baseline of the same base optimizer is the median of the ratios
measured within each round. Each timed `fit` runs many steps (50 at batch
128, 500 at batch 1 by default), so that the fixed cost of a `fit` call
(data adapter, callbacks) does not blur the per-step cost. A second, finer
measurement pairs single `train_on_batch` steps instead of whole fits
(`paired_step_ratios`). One backend per process:

    KERAS_BACKEND=jax python benchmarks/bench_optimizers.py
    KERAS_BACKEND=torch python benchmarks/bench_optimizers.py --batch-sizes 1 --steps 100
"""

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_gsmooth  # noqa: E402
from keras_gsmooth import schedules  # noqa: E402
from keras_gsmooth.convert import smooth_model  # noqa: E402
from keras_gsmooth.optimizers import GSmoothAdam  # noqa: E402
from keras_gsmooth.optimizers import GSmoothSGD  # noqa: E402
from keras_gsmooth.svrg import GSmoothSVRG  # noqa: E402
from keras_gsmooth.svrg import SVRGSnapshot  # noqa: E402

SIGMA = 0.1
REGULARIZATION = 1e-5


def _schedule():
    return schedules.ExponentialDecay(SIGMA, decay_steps=1000, decay_rate=0.5)


CONFIGS = {
    "plain_sgd": (lambda: keras.optimizers.SGD(0.01), None),
    "plain_adam": (lambda: keras.optimizers.Adam(1e-3), None),
    "sgd": (lambda: keras.optimizers.SGD(0.01), SIGMA),
    "gsmooth_sgd": (lambda: GSmoothSGD(0.01, sigma=_schedule()), 0.0),
    "adam": (lambda: keras.optimizers.Adam(1e-3), SIGMA),
    "gsmooth_adam": (lambda: GSmoothAdam(1e-3, sigma=_schedule()), 0.0),
    "gsmooth_svrg": (lambda: GSmoothSVRG(0.01, sigma=_schedule()), 0.0),
}
BASELINE = {"plain_sgd": "sgd", "plain_adam": "adam", "sgd": "sgd", "gsmooth_sgd": "sgd", "adam": "adam", "gsmooth_adam": "adam", "gsmooth_svrg": "sgd"}


class _Run:
    """One compiled model, optimizer and data set, timed by whole `fit` calls."""

    def __init__(self, name, batch_size, steps, seed=0):
        make_optimizer, sigma = CONFIGS[name]
        keras.utils.set_random_seed(seed)
        self.model = keras_gsmooth.models.paper_cnn()
        if sigma is not None:
            self.model = smooth_model(self.model, sigma=sigma, regularization=REGULARIZATION)
        self.model.compile(optimizer=make_optimizer(), loss="mse")
        rng = np.random.default_rng(seed)
        self.x = rng.uniform(size=(batch_size * steps, 28, 28, 1)).astype("float32")
        self.y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch_size * steps)]
        self.batch_size = batch_size
        self.callbacks = [SVRGSnapshot(self.x[:batch_size], self.y[:batch_size], batch_size=batch_size)] if name == "gsmooth_svrg" else []
        self.fit()  # compile and warm up

    def fit(self):
        start = time.perf_counter()
        self.model.fit(self.x, self.y, batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=self.callbacks)
        return time.perf_counter() - start

    def step(self):
        """One `train_on_batch` call on the first batch; returns its seconds."""
        start = time.perf_counter()
        self.model.train_on_batch(self.x[: self.batch_size], self.y[: self.batch_size])
        return time.perf_counter() - start


def _paired_rounds(timers: dict, rounds: int, seed: int) -> tuple:
    """Runs `timers` (name -> function returning seconds) round by round, in a fresh random order each round.

    Returns:
        `(medians of the seconds, medians of each time ÷ its baseline's in the same round)`,
        both name -> float.
    """
    order = random.Random(seed)
    names = list(timers)
    seconds = {name: [] for name in timers}
    ratios = {name: [] for name in timers}
    for _ in range(rounds):
        order.shuffle(names)
        times = {name: timers[name]() for name in names}
        for name in timers:
            seconds[name].append(times[name])
            ratios[name].append(times[name] / times[BASELINE[name]])
    median = lambda samples: {name: statistics.median(values) for name, values in samples.items()}  # noqa: E731
    return median(seconds), median(ratios)


def build_runs(batch_size: int, steps: int, seed: int = 0) -> dict:
    """Every configuration compiled and warmed up on `steps` batches of data: name -> run.

    `benchmark` and `paired_step_ratios` time the same runs, so each
    configuration compiles once.
    """
    return {name: _Run(name, batch_size, steps, seed) for name in CONFIGS}


def benchmark(runs: dict, steps: int, repeats: int, seed: int = 0) -> dict:
    """Steps per second of every configuration, and its time per step against its baseline.

    Each round times one `fit` of every configuration, in a fresh random
    order (so no configuration always follows the same neighbour), and
    divides each configuration's time by its baseline's time in the same
    round; the ratio reported is the median of these paired ratios, which
    cancels the slow drifts of a shared machine that a ratio of medians keeps.

    Args:
        runs: From `build_runs`, with `steps` batches of data each.
        steps: The train steps of one `fit`.
        repeats: Timed fits of each configuration.
        seed: Seeds the order of the configurations in each round.

    Returns:
        name -> `(steps per second, time per step ÷ baseline's)`, medians over rounds.
    """
    seconds, ratios = _paired_rounds({name: run.fit for name, run in runs.items()}, repeats, seed)
    return {name: (steps / seconds[name], ratios[name]) for name in CONFIGS}


def paired_step_ratios(runs: dict, rounds: int, seed: int = 0) -> dict:
    """Time per step ÷ the fixed-σ baseline's, paired step by step.

    A finer measurement than whole fits: each round runs one `train_on_batch`
    of every configuration, in a fresh random order, and divides each time
    by the baseline's time in the same round. Neighbouring steps share the
    machine's state, so the median of these ratios resolves differences of a
    few per cent that the spread between whole fits hides. GSmoothSVRG's
    steps are inner steps (two gradients each), on the snapshot that its
    last `fit` took.

    Args:
        runs: From `build_runs`.
        rounds: Timed steps of each configuration.
        seed: Seeds the order of the configurations in each round.

    Returns:
        name -> median paired ratio.
    """
    for run in runs.values():
        run.step()
    return _paired_rounds({name: run.step for name, run in runs.items()}, rounds, seed)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 128])
    parser.add_argument("--steps", type=int, default=50, help="train steps per timed fit (batch 1 uses 10x as many)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-rounds", type=int, default=100, help="rounds of the paired step measurement (batch 1 uses 10x as many)")
    args = parser.parse_args()
    print(f"backend={keras.backend.backend()} keras={keras.__version__} σ={SIGMA} λ={REGULARIZATION}")
    print(f"{'batch':>5}  {'optimizer':<13} {'steps/s':>9}  {'fits: time/step ÷ fixed σ':>26}  {'steps: paired ratio':>20}")
    for batch_size in args.batch_sizes:
        steps = args.steps * 10 if batch_size == 1 else args.steps
        runs = build_runs(batch_size, steps)
        results = benchmark(runs, steps, args.repeats)
        paired = paired_step_ratios(runs, args.step_rounds * 10 if batch_size == 1 else args.step_rounds)
        for name, (rate, ratio) in results.items():
            print(f"{batch_size:>5}  {name:<13} {rate:>9.1f}  {ratio:>25.2f}x  {paired[name]:>19.3f}x")


if __name__ == "__main__":
    main()
