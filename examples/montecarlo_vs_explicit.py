"""Pipeline 6: explicit (closed-form) against Monte-Carlo smoothing: accuracy and wall time.

The same task for every method: the paper's CNN on a noisy cell of the
bundled MNIST sample, Adam, a fixed number of epochs. Methods:

- `plain`: the unsmoothed CNN;
- `explicit`: `smooth_model(cnn)` at σ (closed form: one pass per step);
- `montecarlo-K`: `keras_gsmooth.montecarlo.MonteCarloModel(cnn, σ, K)`,
  first-order estimates with K weight perturbations per step.

The two smoothings do not smooth the same objective: Monte Carlo over the
weights estimates E[L(θ + σu)] of the composed network, the closed form is
the paper's layer-wise surrogate of the lifted objective (SPEC.md §3–4); they
agree only for a single linear layer. So this compares the two ways of
training "a smoothed network" at equal σ on accuracy and cost, not two
estimates of one quantity. Writes `montecarlo.csv` (resumable),
`montecarlo_table.txt` (test accuracy and seconds per epoch, mean ± sd over
seeds) and `montecarlo.png` to `--output-dir`.

    python examples/montecarlo_vs_explicit.py --sigmas 0.01 0.1 --samples 1 4 --output-dir runs/montecarlo
"""

import argparse
import dataclasses
import os

import keras

from keras_gsmooth import smooth_model
from keras_gsmooth.experiments import cli
from keras_gsmooth.experiments import load_dataset
from keras_gsmooth.experiments import noisy_splits
from keras_gsmooth.experiments import run_grid
from keras_gsmooth.experiments import summarize
from keras_gsmooth.experiments.grid import GridCell
from keras_gsmooth.experiments.grid import format_table
from keras_gsmooth.experiments.plots import pyplot
from keras_gsmooth.experiments.training import fit_and_evaluate
from keras_gsmooth.models import paper_cnn
from keras_gsmooth.montecarlo import MonteCarloModel


@dataclasses.dataclass(frozen=True)
class SmoothingCell(GridCell):
    method: str
    sigma: float
    samples: int
    seed: int
    learning_rate: float
    epochs: int
    batch_size: int
    input_noise: float
    label_noise: float
    regularization: float
    train_size: int


class SmoothingExperiment:
    result_fields = ("test_accuracy", "seconds", "seconds_per_epoch")

    def __init__(self, verbose: int):
        self.verbose, self._data = verbose, {}

    def model(self, cell: SmoothingCell, data):
        if cell.method == "plain":
            return paper_cnn(data.input_shape, data.num_classes)
        if cell.method == "explicit":
            return smooth_model(paper_cnn(data.input_shape, data.num_classes), sigma=cell.sigma,
                                regularization=cell.regularization)
        return MonteCarloModel(paper_cnn(data.input_shape, data.num_classes), cell.sigma, num_samples=cell.samples,
                               seed=cell.seed)

    def __call__(self, cell: SmoothingCell) -> dict:
        if cell.train_size not in self._data:
            self._data[cell.train_size] = load_dataset("mnist_sample", train_size=cell.train_size)
        data = self._data[cell.train_size]
        keras.backend.clear_session()
        keras.utils.set_random_seed(cell.seed)
        model = self.model(cell, data)
        metrics = fit_and_evaluate(
            model, keras.optimizers.Adam(cell.learning_rate),
            noisy_splits(data, cell.input_noise, cell.label_noise, cell.seed), data.num_classes,
            batch_size=cell.batch_size, max_epochs=cell.epochs, patience=cell.epochs, verbose=self.verbose,
        )
        return {"test_accuracy": metrics["test_accuracy"], "seconds": metrics["seconds"],
                "seconds_per_epoch": metrics["seconds"] / metrics["epochs_run"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/montecarlo", help="Where the CSV, table and figure go.")
    parser.add_argument("--sigmas", type=cli.non_negative_float, nargs="+", default=[0.01, 0.1], help="σ of both smoothings.")
    parser.add_argument("--samples", type=cli.positive_int, nargs="+", default=[1, 4], help="Monte-Carlo samples K per step.")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=1e-3, help="Adam's learning rate.")
    parser.add_argument("--regularization", type=cli.non_negative_float, default=1e-5, help="λ of the explicit smoothing.")
    cli.add_noisy_run_arguments(parser, epochs=5, epochs_help="Epochs (fixed).")
    parser.add_argument("--quick", action="store_true", help="Tiny data, one epoch, one σ and K = 1 (the smoke test).")
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    if args.quick:
        args.sigmas, args.samples, args.epochs, args.train_size, args.seeds = args.sigmas[:1], [1], 1, 60, args.seeds[:1]
    settings = (args.learning_rate, args.epochs, args.batch_size, args.input_noise, args.label_noise,
                args.regularization, args.train_size)
    cells = [SmoothingCell("plain", 0.0, 0, seed, *settings) for seed in args.seeds]
    for sigma in args.sigmas:
        cells += [SmoothingCell("explicit", sigma, 0, seed, *settings) for seed in args.seeds]
        cells += [SmoothingCell(f"montecarlo-{k}", sigma, k, seed, *settings) for k in args.samples for seed in args.seeds]
    experiment = SmoothingExperiment(args.verbose)
    rows = run_grid(cells, experiment, os.path.join(args.output_dir, "montecarlo.csv"), experiment.result_fields)
    summary = summarize(rows, ["method", "sigma"], ["test_accuracy", "seconds_per_epoch"])
    table = "\n\n".join([format_table(summary, ["method", "sigma"], "test_accuracy"),
                         format_table(summary, ["method", "sigma"], "seconds_per_epoch", scale=1.0)])
    print(table)
    with open(os.path.join(args.output_dir, "montecarlo_table.txt"), "w") as handle:
        handle.write(table + "\n")

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for entry in summary:
        axis.errorbar(entry["seconds_per_epoch_mean"], 100 * entry["test_accuracy_mean"],
                      yerr=100 * entry["test_accuracy_std"], fmt="o", label=f"{entry['method']}, σ={entry['sigma']:g}")
    axis.set_xlabel("seconds per epoch")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("explicit against Monte-Carlo smoothing")
    axis.legend(fontsize=7)
    figure.savefig(os.path.join(args.output_dir, "montecarlo.png"), dpi=120, bbox_inches="tight")
    plt.close(figure)
    return rows


if __name__ == "__main__":
    main()
