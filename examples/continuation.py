"""Pipeline 5: σ schedules (continuation) on a real network, against fixed σ.

Trains the paper's CNN with GSmoothSGD on a noisy cell of the bundled MNIST
sample (input-noise sd and label noise as options) for a fixed number of
epochs (no early stopping: a changing σ changes the objective that the
validation loss measures), with:

- fixed σ: `fixed-0` (plain SGD) and `fixed-<σ0>`;
- `continuation`: the paper's homotopy, σ0, σ0/2, σ0/4, 0, each held for a
  quarter of the steps (`PiecewiseConstant`);
- `exponential`: σ0 · 0.01^(t/T) (`ExponentialDecay`);
- `cosine`: σ0 → 0 along a half cosine (`CosineDecay`).

Every schedule ends at or near σ = 0, so the trained network is (nearly) the
plain CNN; the fixed-σ run is scored as trained (with its smoothed
activations). The grid is resumable. Writes `continuation.csv`,
`continuation_table.txt` (test accuracy, mean ± sd over seeds) and
`continuation.png` (validation accuracy per epoch) to `--output-dir`.

    python examples/continuation.py --seeds 0 1 2 --output-dir runs/continuation
"""

import argparse
import dataclasses
import math
import os

import keras

from keras_gsmooth import schedules
from keras_gsmooth.experiments import cli
from keras_gsmooth.experiments import load_dataset
from keras_gsmooth.experiments import noisy_splits
from keras_gsmooth.experiments import run_grid
from keras_gsmooth.experiments import summarize
from keras_gsmooth.experiments.grid import GridCell
from keras_gsmooth.experiments.grid import format_table
from keras_gsmooth.experiments.plots import pyplot
from keras_gsmooth.experiments.training import build_model
from keras_gsmooth.experiments.training import fit_and_evaluate
from keras_gsmooth.experiments.training import make_optimizer

SCHEDULES = ("fixed-0", "fixed", "continuation", "exponential", "cosine")


def make_schedule(name: str, sigma: float, total_steps: int):
    """The σ schedule called `name`, starting at `sigma`, over `total_steps` steps."""
    if name == "fixed-0":
        return 0.0
    if name == "fixed":
        return sigma
    if name == "continuation":
        quarter = max(total_steps // 4, 1)
        return schedules.PiecewiseConstant([quarter, 2 * quarter, 3 * quarter], [sigma, sigma / 2, sigma / 4, 0.0])
    if name == "exponential":
        return schedules.ExponentialDecay(sigma, decay_steps=max(total_steps // 2, 1), decay_rate=0.1)
    if name == "cosine":
        return schedules.CosineDecay(sigma, decay_steps=total_steps)
    raise ValueError(f"unknown schedule {name!r}; choose from {SCHEDULES}")


@dataclasses.dataclass(frozen=True)
class ScheduleCell(GridCell):
    schedule: str
    sigma: float
    seed: int
    learning_rate: float
    epochs: int
    batch_size: int
    input_noise: float
    label_noise: float
    regularization: float
    train_size: int


class ScheduleExperiment:
    result_fields = ("test_accuracy", "val_accuracy", "seconds", "val_accuracy_by_epoch")

    def __init__(self, verbose: int):
        self.verbose, self._data = verbose, {}

    def __call__(self, cell: ScheduleCell) -> dict:
        if cell.train_size not in self._data:
            self._data[cell.train_size] = load_dataset("mnist_sample", train_size=cell.train_size, test_size=None)
        data = self._data[cell.train_size]
        keras.backend.clear_session()
        keras.utils.set_random_seed(cell.seed)
        steps = cell.epochs * math.ceil(len(data.x_train) / cell.batch_size)
        sigma = make_schedule(cell.schedule, cell.sigma, steps)
        smoothed = cell.schedule != "fixed-0"
        model = build_model(data.input_shape, data.num_classes, smoothed, cell.regularization)
        history = keras.callbacks.History()
        metrics = fit_and_evaluate(
            model, make_optimizer("sgd", cell.learning_rate, sigma if smoothed else None),
            noisy_splits(data, cell.input_noise, cell.label_noise, cell.seed), data.num_classes,
            batch_size=cell.batch_size, max_epochs=cell.epochs, patience=cell.epochs, callbacks=[history],
            verbose=self.verbose,
        )
        curve = ";".join(f"{a:.4f}" for a in history.history["val_categorical_accuracy"])
        return {key: metrics[key] for key in ("test_accuracy", "val_accuracy", "seconds")} | {
            "val_accuracy_by_epoch": curve
        }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/continuation", help="Where the CSV, table and figure go.")
    parser.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES), help="Schedules to compare.")
    parser.add_argument("--sigma", type=cli.non_negative_float, default=0.5, help="σ0: the fixed σ and every schedule's start.")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=0.5, help="GSmoothSGD's learning rate (MSE loss).")
    parser.add_argument("--regularization", type=cli.non_negative_float, default=1e-5, help="λ for every penalty.")
    cli.add_noisy_run_arguments(parser, epochs=8, epochs_help="Epochs (fixed; no early stopping).")
    parser.add_argument("--quick", action="store_true", help="Tiny data, one epoch, two schedules (the smoke test).")
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    if args.quick:
        args.schedules, args.epochs, args.train_size, args.seeds = ["fixed-0", "continuation"], 1, 60, args.seeds[:1]
    cells = [
        ScheduleCell(name, args.sigma, seed, args.learning_rate, args.epochs, args.batch_size,
                     args.input_noise, args.label_noise, args.regularization, args.train_size)
        for name in args.schedules for seed in args.seeds
    ]
    experiment = ScheduleExperiment(args.verbose)
    rows = run_grid(cells, experiment, os.path.join(args.output_dir, "continuation.csv"), experiment.result_fields)
    summary = summarize(rows, ["schedule", "sigma"], ["test_accuracy"])
    table = format_table(summary, ["schedule", "sigma"], "test_accuracy")
    print(table)
    with open(os.path.join(args.output_dir, "continuation_table.txt"), "w") as handle:
        handle.write(table + "\n")

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in args.schedules:
        curves = [[float(v) for v in str(r["val_accuracy_by_epoch"]).split(";")] for r in rows if r["schedule"] == name]
        epochs = min(len(curve) for curve in curves)
        mean = [100 * sum(curve[e] for curve in curves) / len(curves) for e in range(epochs)]
        axis.plot(range(1, epochs + 1), mean, marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation accuracy (%), mean over seeds")
    axis.set_title(f"GSmoothSGD, σ0 = {args.sigma:g}: schedules against fixed σ")
    axis.legend(fontsize=8)
    figure.savefig(os.path.join(args.output_dir, "continuation.png"), dpi=120, bbox_inches="tight")
    plt.close(figure)
    return rows


if __name__ == "__main__":
    main()
