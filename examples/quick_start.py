"""Pipeline 1, quick start: smooth an existing Keras model, train it, compare with the plain one.

Takes the paper's CNN (any functional or Sequential Keras model works),
converts it with `keras_gsmooth.smooth_model`, and trains the plain and the
smoothed model on the same data (the bundled 5,000-image MNIST sample, with
Gaussian input noise and label noise) with early stopping on a validation
split. Writes `quick_start.csv` (one row per model) and
`quick_start.png` (validation accuracy per epoch) to `--output-dir`.

    python examples/quick_start.py --output-dir runs/quick_start
    python examples/quick_start.py --quick   # a few seconds, tiny data
"""

import argparse
import csv
import os

import keras

import keras_gsmooth
from keras_gsmooth.experiments import cli
from keras_gsmooth.experiments import load_dataset
from keras_gsmooth.experiments import noisy_splits
from keras_gsmooth.experiments.plots import pyplot
from keras_gsmooth.experiments.training import fit_and_evaluate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/quick_start", help="Where the CSV and the figure go.")
    parser.add_argument("--sigma", type=cli.non_negative_float, default=0.1, help="The smoothing radius σ.")
    parser.add_argument("--regularization", type=cli.non_negative_float, default=1e-5, help="The penalty weight λ.")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=1e-3, help="Adam's learning rate.")
    parser.add_argument("--input-noise", type=cli.non_negative_float, default=0.5, help="sd of the noise on training images.")
    parser.add_argument("--label-noise", type=cli.fraction, default=0.2, help="Fraction of training labels changed.")
    parser.add_argument("--epochs", type=cli.positive_int, default=10, help="At most this many epochs (early stopping, patience 2).")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64, help="Batch size.")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="Seed of the noise and the initial weights.")
    parser.add_argument("--quick", action="store_true", help="Tiny data and one epoch (the smoke test).")
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    data = load_dataset("mnist_sample", train_size=60 if args.quick else None, test_size=30 if args.quick else None)
    splits = noisy_splits(data, args.input_noise, args.label_noise, seed=args.seed)
    epochs = 1 if args.quick else args.epochs

    rows, histories = [], {}
    for name in ("plain", "smoothed"):
        keras.utils.set_random_seed(args.seed)
        model = keras_gsmooth.models.paper_cnn(data.input_shape, data.num_classes)  # any Keras model
        optimizer = keras.optimizers.Adam(args.learning_rate)
        if name == "smoothed":
            model = keras_gsmooth.smooth_model(model, sigma=args.sigma, regularization=args.regularization)
        history = keras.callbacks.History()
        metrics = fit_and_evaluate(
            model, optimizer, splits, data.num_classes, batch_size=args.batch_size,
            max_epochs=epochs, callbacks=[history], verbose=1,
        )
        histories[name] = history.history["val_categorical_accuracy"]
        rows.append({"model": name, "sigma": args.sigma if name == "smoothed" else 0.0, **metrics})
        print(f"{name}: test accuracy {100 * metrics['test_accuracy']:.2f}% after {metrics['epochs_run']} epochs")

    with open(os.path.join(args.output_dir, "quick_start.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, accuracy in histories.items():
        axis.plot(range(1, len(accuracy) + 1), [100 * a for a in accuracy], marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation accuracy (%)")
    axis.set_title(f"paper CNN, σ = {args.sigma:g}, {data.name}")
    axis.legend()
    figure.savefig(os.path.join(args.output_dir, "quick_start.png"), dpi=120, bbox_inches="tight")
    plt.close(figure)
    return rows


if __name__ == "__main__":
    main()
