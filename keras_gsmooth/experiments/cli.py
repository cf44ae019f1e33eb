"""The command line of the noisy-image experiments (the main job and pipeline 2).

`python -m keras_gsmooth.experiments [options]` runs a grid and reports it;
`python -m keras_gsmooth.experiments merge --output-dir DIR CSV...` merges
shard CSVs and reports them. The report is a results table (mean ± spread
over seeds per cell, printed and written to `results_table.txt`) and one
heatmap PNG per data set, optimizer and learning-rate view, like the
paper's Figures 5–6.

Learning-rate views: `paper` keeps, for each σ, the runs at the paper's
Table 6 rate; `best-val` keeps, for each σ and noise cell, the rate of the
grid with the best mean validation accuracy (chosen on the validation split,
never on the test split). With one rate per optimizer `best-val` is simply
that rate.
"""

import argparse
import itertools
import math
import os
import sys

from keras_gsmooth.experiments import paper
from keras_gsmooth.experiments.data import DATASETS
from keras_gsmooth.experiments.grid import format_table
from keras_gsmooth.experiments.grid import merge_results
from keras_gsmooth.experiments.grid import parse_shard
from keras_gsmooth.experiments.grid import run_grid
from keras_gsmooth.experiments.grid import shard_cells
from keras_gsmooth.experiments.grid import summarize
from keras_gsmooth.experiments.plots import plot_noise_heatmaps
from keras_gsmooth.experiments.training import LOSSES
from keras_gsmooth.experiments.training import OPTIMIZERS
from keras_gsmooth.experiments.training import ImageCell
from keras_gsmooth.experiments.training import ImageExperiment
from keras_gsmooth.experiments.training import UpdateNorms

MAIN_JOB = {
    "output_dir": "runs/main",
    "dataset": "mnist_sample",
    "train_size": 2000,
    "test_size": 0,
    "input_noise": [0.0, 1.0],
    "label_noise": [0.0, 0.4],
    "optimizers": ["sgd", "adam"],
    "sigmas": [0.0, 0.1],
    "learning_rates": ["sgd:0.5", "adam:0.001"],
    "regularization": "1e-5",
    "seeds": [0, 1],
    "batch_size": 64,
    "epochs": 6,
    "patience": 2,
    "loss": "mse",
}
"""Defaults of the main job: a reduced noisy-MNIST grid on the bundled sample (32 runs), sized for ≤ 10 min on 2 CPU cores."""

PAPER_PROTOCOL = {
    **MAIN_JOB,
    "output_dir": "runs/noise_heatmaps",
    "dataset": "mnist",
    "input_noise": list(paper.INPUT_NOISE_SDS),
    "label_noise": list(paper.LABEL_NOISE_FRACTIONS),
    "sigmas": list(paper.SIGMAS),
    "learning_rates": ["paper", "1e-4", "1e-3", "1e-2"],
    "regularization": "paper",
    "train_size": 0,
    "seeds": [0, 1, 2],
    "batch_size": 1,
    "epochs": 25,
}
"""Defaults of pipeline 2: the paper's full protocol (with its flaws fixed)."""

SVRG_PROTOCOL = {
    **PAPER_PROTOCOL,
    "output_dir": "runs/svrg",
    "optimizers": ["sgd", "svrg"],
    "sigmas": [0.0, 0.1],
    "learning_rates": [str(paper.SVRG_LEARNING_RATE)],
    "epochs": 1,
}
"""Defaults of pipeline 4 (appendix F.2): SGD, SVRG (σ = 0) and GSmoothSVRG (σ = 0.1), batch 1, one epoch, rate 0.01."""

SVRG_PROBES = (UpdateNorms,)
"""Pipeline 4 records the norm of every update."""

_GROUP = ("dataset", "optimizer", "sigma", "learning_rate", "input_noise", "label_noise")
_METRICS = ("test_accuracy", "val_accuracy", "epochs_run", "seconds")


def _learning_rates(tokens, optimizer: str, dataset: str, sigma: float) -> list:
    """The rates of the grid for one optimizer and σ, from `--learning-rates` tokens."""
    rates = []
    for token in tokens:
        if token == "paper":
            rates.append(paper.paper_learning_rate(dataset, optimizer, sigma))
            continue
        name, _, value = token.rpartition(":")
        if name in ("", optimizer):
            rates.append(float(value))
    if not rates:
        raise ValueError(f"--learning-rates gives no rate for optimizer {optimizer!r}: {tokens}")
    return sorted(set(rates))


def _check_learning_rate_tokens(tokens) -> list:
    for token in tokens:
        name, _, value = token.rpartition(":")
        try:
            ok = token == "paper" or (name in ("", *OPTIMIZERS) and 0 < float(value) < math.inf)
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(
                f"--learning-rates: {token!r} is not 'paper', a rate (0.01) or optimizer:rate (sgd:0.01)."
            )
    return tokens


def build_cells(args) -> list:
    """The grid described by parsed arguments, in a fixed order (seeds innermost)."""
    cells = []
    for optimizer, sigma, input_noise, label_noise in itertools.product(
        args.optimizers, args.sigmas, args.input_noise, args.label_noise
    ):
        for learning_rate in _learning_rates(args.learning_rates, optimizer, args.dataset, sigma):
            for seed in args.seeds:
                cells.append(
                    ImageCell(
                        dataset=args.dataset,
                        input_noise=input_noise,
                        label_noise=label_noise,
                        optimizer=optimizer,
                        sigma=sigma,
                        learning_rate=learning_rate,
                        regularization=args.regularization,
                        seed=seed,
                        batch_size=args.batch_size,
                        max_epochs=args.epochs,
                        patience=args.patience,
                        loss=args.loss,
                        train_size=args.train_size,
                        allow_fallback=not args.no_fallback,
                    )
                )
    return cells


def _views(rows, with_paper: bool) -> dict:
    """Named subsets of the rows: one learning rate per (σ, noise cell)."""
    summary = summarize(rows, _GROUP, ("val_accuracy",))
    best = {}
    for entry in summary:
        key = tuple(entry[field] for field in _GROUP if field != "learning_rate")
        if key not in best or entry["val_accuracy_mean"] > best[key][1]:
            best[key] = (entry["learning_rate"], entry["val_accuracy_mean"])
    views = {
        "best-val": [
            row for row in rows
            if best[tuple(row[f] for f in _GROUP if f != "learning_rate")][0] == row["learning_rate"]
        ]
    }
    if with_paper:
        views["paper-lr"] = [row for row in rows if _at_paper_rate(row)]
    return views


def _at_paper_rate(row: dict) -> bool:
    """Whether a run used the paper's Table 6 learning rate for its optimizer and σ."""
    try:
        return row["learning_rate"] == paper.paper_learning_rate(row["dataset"], row["optimizer"], row["sigma"])
    except ValueError:
        return False


def report(rows, output_dir: str, with_paper: bool, extra_metrics: tuple = ()) -> str:
    """Prints and writes the results tables and draws the heatmaps.

    Args:
        rows: Result rows (`grid.read_results`).
        output_dir: Where `results_table.txt` and the heatmaps go.
        with_paper: Also report the runs at the paper's learning rates.
        extra_metrics: More result columns to tabulate (e.g. `update_norm_std`).

    Returns:
        The text of the tables.
    """
    if not rows:
        raise ValueError(f"report: no results to report in {output_dir}.")
    sources = sorted({str(row["data_source"]) for row in rows})
    text = [f"data: {', '.join(sources)}" + ("  (FALLBACK to the bundled sample)" if any(r["fallback"] for r in rows) else "")]
    for view, subset in _views(rows, with_paper).items():
        summary = summarize(subset, _GROUP, (*_METRICS, *extra_metrics))
        text.append(f"\n== learning rate: {view} — test accuracy (%), mean ± sd over seeds ==")
        text.append(format_table(summary, _GROUP, "test_accuracy"))
        for metric in extra_metrics:
            text.append(f"\n== learning rate: {view} — {metric}, mean ± sd over seeds ==")
            # Extra metrics (update norms ~1e-3) need significant digits, not decimals.
            text.append(format_table(summary, _GROUP, metric, scale=1.0, number_format=".3g"))
        for dataset, optimizer in sorted({(e["dataset"], e["optimizer"]) for e in summary}):
            panel = [e for e in summary if (e["dataset"], e["optimizer"]) == (dataset, optimizer)]
            path = os.path.join(output_dir, f"heatmap_{dataset}_{optimizer}_{view}.png")
            plot_noise_heatmaps(panel, path, title=f"{dataset}, {optimizer}, learning rate: {view}")
            text.append(f"heatmap: {path}")
    text = "\n".join(text)
    print(text)
    with open(os.path.join(output_dir, "results_table.txt"), "w") as handle:
        handle.write(text + "\n")
    return text


def checked_number(kind: type, accept, requirement: str):
    """An argparse `type` that converts with `kind` and refuses values `accept` rejects.

    Args:
        kind: `int` or `float`.
        accept: A function `value -> bool`.
        requirement: What a valid value is, for the error message
            (`"an integer >= 1"`).

    Returns:
        A function `text -> value` that raises `argparse.ArgumentTypeError`
        (which argparse reports with the option's name) on a bad value.

    Example:

    ```python
    parser.add_argument("--folds", type=checked_number(int, lambda v: v >= 2, "an integer >= 2"))
    ```
    """

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {requirement}")
        return value

    convert.__name__ = requirement
    return convert


positive_int = checked_number(int, lambda value: value >= 1, "an integer >= 1")
non_negative_int = checked_number(int, lambda value: value >= 0, "an integer >= 0")
positive_float = checked_number(float, lambda value: 0 < value < math.inf, "a finite number > 0")
non_negative_float = checked_number(float, lambda value: 0 <= value < math.inf, "a finite number >= 0")
fraction = checked_number(float, lambda value: 0 <= value <= 1, "a fraction in [0, 1]")
open_fraction = checked_number(float, lambda value: 0 < value < 1, "a fraction in (0, 1)")


def _regularization(text: str) -> str:
    """`--regularization`: 'paper', or λ as written (the grid records it as text) if it is a number >= 0."""
    if text != "paper":
        try:
            non_negative_float(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither 'paper' nor a finite number >= 0") from None
    return text


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and shows every option's default."""


def build_parser(defaults: dict, prog: str | None = None, description: str = __doc__) -> argparse.ArgumentParser:
    """The argument parser of a grid run, with the given defaults."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    parser.set_defaults(**defaults)
    add = parser.add_argument
    add("--output-dir", help="Directory of the CSV, the results table and the heatmap PNGs.")
    add("--dataset", choices=DATASETS, help="mnist_sample: the bundled 5,000-image sample (no download); "
        "mnist / cifar10: keras.datasets (download or Keras cache).")
    add("--no-fallback", action="store_true", help="Fail instead of falling back to the bundled sample when "
        "MNIST cannot be loaded (the fallback is always printed and recorded in the CSV).")
    add("--train-size", type=non_negative_int, help="Use this many training images (before the validation split); 0: all.")
    add("--test-size", type=non_negative_int, help="Use this many test images; 0: all.")
    add("--validation-fraction", type=open_fraction, default=0.1,
        help="Fraction of the training data held out (per class) for early stopping.")
    add("--input-noise", type=non_negative_float, nargs="+", help="Standard deviations of the Gaussian noise on training images.")
    add("--label-noise", type=fraction, nargs="+", help="Fractions of training labels changed to another class.")
    add("--optimizers", nargs="+", choices=OPTIMIZERS, help="Optimizers (on σ > 0: GSmoothSGD / GSmoothAdam).")
    add("--sigmas", type=non_negative_float, nargs="+", help="Smoothing radii σ; 0 is the plain CNN.")
    add("--learning-rates", nargs="+", type=str,
        help="Learning rates: 'paper' (Table 6, per optimizer and σ), a rate for every optimizer (0.01), "
        "or optimizer:rate (sgd:0.05). Several make a grid; the report picks the best per σ on validation.")
    add("--regularization", type=_regularization,
        help="λ: a float for every penalty, or 'paper' for Table 6's per-layer λ.")
    add("--seeds", type=non_negative_int, nargs="+", help="Seeds (noise, initial weights, batch order); the report gives mean ± sd.")
    add("--batch-size", type=positive_int, help="Batch size (the paper used 1).")
    add("--epochs", type=positive_int, help="At most this many epochs (the paper: 25).")
    add("--patience", type=non_negative_int, help="Early-stopping patience on the validation loss (the paper: 2).")
    add("--loss", choices=LOSSES, help="mse on one-hot labels (the paper) or crossentropy.")
    add("--shard", default="0/1",
        help="Run shard k of n (zero-based, e.g. $SLURM_ARRAY_TASK_ID/n); each shard writes its own CSV. "
        "Merge them with the `merge` command.")
    add("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras verbosity of each run (1: progress bars).")
    add("--quick", action="store_true", help="Smoke-test mode: 40 training and 20 test images, one epoch, the "
        "first seed, the last optimizer, the last noise cell, the first and last σ, one learning rate.")
    return parser


def add_noisy_run_arguments(parser: argparse.ArgumentParser, epochs: int, epochs_help: str) -> None:
    """Adds the options the small example grids share: noise, data size, training length, seeds, verbosity.

    Args:
        parser: The example's parser.
        epochs: The default number of epochs.
        epochs_help: How the example uses `--epochs` (fixed or early-stopped).
    """
    add = parser.add_argument
    add("--epochs", type=positive_int, default=epochs, help=epochs_help)
    add("--batch-size", type=positive_int, default=64, help="Batch size.")
    add("--input-noise", type=non_negative_float, default=0.5, help="sd of the noise on training images.")
    add("--label-noise", type=fraction, default=0.2, help="Fraction of training labels changed.")
    add("--train-size", type=positive_int, default=2000, help="Training images (before the validation split).")
    add("--seeds", type=non_negative_int, nargs="+", default=[0, 1], help="Seeds; the table gives mean ± sd.")
    add("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras verbosity of each run.")


def _apply_quick(args) -> None:
    """Shrinks a grid to a few tiny runs (`--quick`)."""
    args.train_size, args.test_size, args.epochs, args.seeds = 40, 20, 1, args.seeds[:1]
    args.optimizers, args.input_noise, args.label_noise = args.optimizers[-1:], args.input_noise[-1:], args.label_noise[-1:]
    args.sigmas = sorted({args.sigmas[0], args.sigmas[-1]})
    optimizer = args.optimizers[0]
    usable = [token for token in args.learning_rates if ":" not in token or token.split(":", 1)[0] == optimizer]
    args.learning_rates = ["paper"] if "paper" in usable else usable[:1]


def _merge_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog or 'python -m keras_gsmooth.experiments'} merge",
        description="Merges shard CSVs into OUTPUT_DIR/results.csv, prints the results table and draws the heatmaps.",
    )
    parser.add_argument("csv", nargs="+", help="The shard CSVs (results-shard-*.csv).")
    parser.add_argument("--output-dir", required=True, help="Directory of the merged CSV, table and heatmaps.")
    return parser


def grid_from_args(args) -> tuple:
    """Checks parsed arguments and returns `(cells of this shard, CSV path, number of shards)`.

    Raises:
        ValueError: on a bad learning rate or shard.
    """
    if args.quick:
        _apply_quick(args)
    _check_learning_rate_tokens(args.learning_rates)
    k, n = parse_shard(args.shard)
    cells = shard_cells(build_cells(args), k, n)
    name = "results.csv" if n == 1 else f"results-shard-{k}-of-{n}.csv"
    return cells, os.path.join(args.output_dir, name), n


def run(args, cells: list, path: str, shards: int, probes: tuple = ()) -> list:
    """Runs (or resumes) a grid and reports it (a single shard is only run)."""
    experiment = ImageExperiment(
        verbose=args.verbose, validation_fraction=args.validation_fraction, test_size=args.test_size or None,
        probes=probes,
    )
    rows = run_grid(cells, experiment, path, experiment.result_fields)
    extra = experiment.result_fields[len(ImageExperiment.base_fields):]
    if shards == 1:
        report(rows, args.output_dir, with_paper="paper" in args.learning_rates, extra_metrics=extra)
    else:
        print(f"shard done: {path}. When every shard is done, run the `merge` command on their CSVs.")
    return rows


def main(
    argv=None, defaults: dict = MAIN_JOB, prog: str | None = None, description: str = __doc__, probes: tuple = ()
) -> int:
    """Entry point: `merge CSV... --output-dir DIR`, or run a grid with `defaults`.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
        defaults: The defaults of the grid options (`MAIN_JOB`, `PAPER_PROTOCOL`).
        prog: The program name shown by `--help`.
        description: The text shown by `--help`.
        probes: Callback classes measuring more per run (`training.UpdateNorms`).

    Returns:
        The exit status, 0.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        args = _merge_parser(prog).parse_args(argv[1:])
        rows = merge_results(args.csv, os.path.join(args.output_dir, "results.csv"))
        extra = tuple(field for probe in probes for field in probe.fields)
        report(rows, args.output_dir, with_paper=any(_at_paper_rate(row) for row in rows), extra_metrics=extra)
        return 0
    parser = build_parser(defaults, prog=prog, description=description)
    args = parser.parse_args(argv)
    try:
        cells, path, shards = grid_from_args(args)
    except (ValueError, argparse.ArgumentTypeError) as error:
        parser.error(str(error))
    run(args, cells, path, shards, probes)
    return 0
