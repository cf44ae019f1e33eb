"""Pipeline 7: the paper's hyperparameter search (learning rate and λ by 5-fold CV) with KerasTuner.

The paper chose the learning rate and the penalty weights λ of the smoothed
CNN by a coarse grid search with 5-fold cross-validation on the noise-free
training set (its Table 6). This pipeline does the same with KerasTuner's
`GridSearch`, whose `run_trial` is overridden to train one model per fold
and report the mean validation accuracy over the folds. The test split is
never used for the search; the best hyperparameters are then scored on it
once.

KerasTuner's distributed mode spreads the trials over machines: start the
same command on every machine with `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT` set to the chief's address, and `KERASTUNER_TUNER_ID`
set to `chief` on one machine and `tuner0`, `tuner1`, … on the others
(see https://keras.io/guides/keras_tuner/distributed_tuning/); all must see
the same `--output-dir`.

Writes the tuner's state (`tuner/`, resumable), `search.csv` (one row per
trial: learning rate, λ, mean and sd of the fold accuracies), `best.txt`
and `search.png` (cross-validated accuracy over learning rate × λ) to
`--output-dir`.

    python examples/hyperparameter_search.py --sigma 0.1 --optimizer sgd --output-dir runs/search
"""

import argparse
import csv
import os

import keras
import keras_tuner
import numpy as np

from keras_gsmooth import smooth_model
from keras_gsmooth.experiments import cli
from keras_gsmooth.experiments import load_dataset
from keras_gsmooth.experiments.plots import pyplot
from keras_gsmooth.experiments.training import fit_and_evaluate
from keras_gsmooth.experiments.training import make_optimizer
from keras_gsmooth.models import paper_cnn

OBJECTIVE = "val_categorical_accuracy"


class CrossValidatedGridSearch(keras_tuner.GridSearch):
    """`GridSearch` whose trial score is the mean validation accuracy over k folds.

    Args:
        folds: Number of folds k.
        fit_settings: Keyword arguments of `fit_and_evaluate` (batch size, epochs, ...).
        **kwargs: Passed to `keras_tuner.GridSearch`.
    """

    def __init__(self, folds: int, fit_settings: dict, **kwargs):
        super().__init__(**kwargs)
        self.folds, self.fit_settings = folds, fit_settings

    def run_trial(self, trial, x, y, num_classes: int, seed: int):
        order = np.random.default_rng(seed).permutation(len(y))
        scores = []
        for fold in np.array_split(order, self.folds):
            keep = np.setdiff1d(order, fold)
            keras.utils.set_random_seed(seed)
            model, optimizer = self.hypermodel.build(trial.hyperparameters)
            splits = ((x[keep], y[keep]), (x[fold], y[fold]), (x[fold], y[fold]))
            scores.append(fit_and_evaluate(model, optimizer, splits, num_classes, **self.fit_settings)["val_accuracy"])
        trial.metrics.register("fold_accuracy_std", direction="min")
        trial.metrics.update("fold_accuracy_std", float(np.std(scores)))
        return {OBJECTIVE: float(np.mean(scores))}


class SmoothedCNN(keras_tuner.HyperModel):
    """The paper's smoothed CNN with the learning rate and one λ as hyperparameters.

    `build` returns `(model, optimizer)`; `CrossValidatedGridSearch.run_trial` compiles and trains them.
    """

    def __init__(self, input_shape, num_classes, sigma, optimizer, learning_rates, regularizations):
        super().__init__()
        self.input_shape, self.num_classes, self.sigma, self.optimizer = input_shape, num_classes, sigma, optimizer
        self.learning_rates, self.regularizations = learning_rates, regularizations

    def build(self, hp):
        learning_rate = hp.Choice("learning_rate", self.learning_rates)
        regularization = hp.Choice("regularization", self.regularizations)
        model = smooth_model(paper_cnn(self.input_shape, self.num_classes), regularization=regularization)
        return model, make_optimizer(self.optimizer, learning_rate, self.sigma)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/search", help="Where the tuner state, CSV and figure go.")
    parser.add_argument("--sigma", type=cli.non_negative_float, default=0.1, help="σ of the smoothed CNN.")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="GSmoothSGD or GSmoothAdam.")
    parser.add_argument("--learning-rates", type=cli.positive_float, nargs="+", default=[1e-1, 1e-2, 1e-3],
                        help="Learning rates of the grid.")
    parser.add_argument("--regularizations", type=cli.non_negative_float, nargs="+", default=[1e-3, 1e-5, 1e-7, 1e-9],
                        help="λ of the grid (one λ for every penalty).")
    parser.add_argument("--folds", type=cli.checked_number(int, lambda value: value >= 2, "an integer >= 2"), default=5, help="Cross-validation folds.")
    parser.add_argument("--epochs", type=cli.positive_int, default=5, help="At most this many epochs per fold (early stopping, patience 2).")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64, help="Batch size.")
    parser.add_argument("--train-size", type=cli.positive_int, default=2000, help="Training images searched over.")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="Seed of the folds and initial weights.")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="Keras verbosity of each fit.")
    parser.add_argument("--quick", action="store_true", help="Tiny data, 2 folds, a 2-point grid, one epoch (the smoke test).")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.learning_rates, args.regularizations = args.learning_rates[:1], args.regularizations[:2]
        args.folds, args.epochs, args.train_size = 2, 1, 40
    os.makedirs(args.output_dir, exist_ok=True)
    data = load_dataset("mnist_sample", train_size=args.train_size)
    x = np.concatenate([data.x_train, data.x_val])  # the folds replace the validation split
    y = np.concatenate([data.y_train, data.y_val])
    fit_settings = {"batch_size": args.batch_size, "max_epochs": args.epochs, "patience": 2, "verbose": args.verbose}
    tuner = CrossValidatedGridSearch(
        folds=args.folds,
        fit_settings=fit_settings,
        hypermodel=SmoothedCNN(data.input_shape, data.num_classes, args.sigma, args.optimizer,
                               args.learning_rates, args.regularizations),
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        directory=args.output_dir,
        project_name="tuner",
        seed=args.seed,
    )
    tuner.search(x, y, num_classes=data.num_classes, seed=args.seed)

    trials = [t for t in tuner.oracle.trials.values() if t.score is not None]
    rows = [
        {"learning_rate": t.hyperparameters.get("learning_rate"), "regularization": t.hyperparameters.get("regularization"),
         "cv_accuracy_mean": t.score, "cv_accuracy_std": t.metrics.get_last_value("fold_accuracy_std")}
        for t in trials
    ]
    with open(os.path.join(args.output_dir, "search.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    best = tuner.get_best_hyperparameters(1)[0]
    keras.utils.set_random_seed(args.seed)
    model, optimizer = tuner.hypermodel.build(best)
    splits = ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test))
    test = fit_and_evaluate(model, optimizer, splits, data.num_classes, **fit_settings)
    text = (f"best of {len(rows)} trials ({args.folds}-fold CV, σ = {args.sigma:g}, {args.optimizer}): "
            f"learning_rate = {best.get('learning_rate'):g}, λ = {best.get('regularization'):g}; "
            f"test accuracy after retraining: {100 * test['test_accuracy']:.2f}%")
    print(text)
    with open(os.path.join(args.output_dir, "best.txt"), "w") as handle:
        handle.write(text + "\n")

    plt = pyplot()
    rates, lambdas = sorted(set(args.learning_rates)), sorted(set(args.regularizations))
    grid = np.full((len(lambdas), len(rates)), np.nan)
    for row in rows:
        grid[lambdas.index(row["regularization"]), rates.index(row["learning_rate"])] = 100 * row["cv_accuracy_mean"]
    figure, axis = plt.subplots(figsize=(1.5 + 1.1 * len(rates), 1.2 + 0.7 * len(lambdas)))
    image = axis.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            axis.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8, color="white")
    axis.set_xticks(range(len(rates)), [f"{r:g}" for r in rates])
    axis.set_yticks(range(len(lambdas)), [f"{r:g}" for r in lambdas])
    axis.set_xlabel("learning rate")
    axis.set_ylabel("λ")
    figure.colorbar(image, label=f"{args.folds}-fold CV accuracy (%)")
    figure.savefig(os.path.join(args.output_dir, "search.png"), dpi=120, bbox_inches="tight")
    plt.close(figure)
    return {"best": best.values, "trials": rows, "test_accuracy": test["test_accuracy"]}


if __name__ == "__main__":
    main()
