"""One training run of the noisy-image experiments: a grid cell in, metrics out.

A cell names a data set, the noise put on its training data, the optimizer,
σ, the learning rate, λ and the seed. σ > 0 trains
`smooth_model(paper_cnn(...))` with `GSmoothSGD` / `GSmoothAdam` /
`GSmoothSVRG` carrying σ. σ = 0 with SGD or Adam is the plain CNN (the
smoothed network at σ = 0 is the same network with zero penalties); SVRG
at σ = 0 is plain SVRG, `GSmoothSVRG` on the smoothed model at σ = 0.

Protocol (SPEC.md §5, with the paper's flaws fixed): noise on the training
and validation splits (both come from the training data), a clean test
split, early stopping on the validation loss with the best weights
restored, MSE on one-hot labels (or cross-entropy).
"""

import dataclasses
import time

import keras
import numpy as np

from keras_gsmooth import optimizers
from keras_gsmooth import svrg
from keras_gsmooth.convert import smooth_model
from keras_gsmooth.experiments import paper
from keras_gsmooth.experiments.data import Dataset
from keras_gsmooth.experiments.grid import GridCell
from keras_gsmooth.experiments.data import load_dataset
from keras_gsmooth.experiments.noise import add_input_noise
from keras_gsmooth.experiments.noise import add_label_noise
from keras_gsmooth.models import paper_cnn

OPTIMIZERS = ("sgd", "adam", "svrg")
LOSSES = ("mse", "crossentropy")


@dataclasses.dataclass(frozen=True)
class ImageCell(GridCell):
    """One cell of the noisy-image grid: everything that defines a run.

    Attributes:
        dataset: `"mnist_sample"`, `"mnist"` or `"cifar10"`.
        input_noise: Standard deviation of the Gaussian noise on training images.
        label_noise: Fraction of training labels changed to another class.
        optimizer: `"sgd"` or `"adam"`.
        sigma: The smoothing radius σ (0: the plain CNN).
        learning_rate: The optimizer's learning rate.
        regularization: λ: a float written as text, or `"paper"` for the
            per-layer λ of the paper's Table 6.
        seed: Seed of the noise, the initial weights and the batch order.
        batch_size, max_epochs, patience: Training settings (early stopping
            on the validation loss with this patience).
        loss: `"mse"` on one-hot labels (the paper) or `"crossentropy"`.
        train_size: Training images used before the validation split (0: all).
        allow_fallback: Whether MNIST may fall back to the bundled sample.
    """

    dataset: str
    input_noise: float
    label_noise: float
    optimizer: str
    sigma: float
    learning_rate: float
    regularization: str
    seed: int
    batch_size: int = 32
    max_epochs: int = 25
    patience: int = 2
    loss: str = "mse"
    train_size: int = 0
    allow_fallback: bool = True

    def resolved_regularization(self):
        """λ as `smooth_model` takes it: a float, or the paper's per-layer mapping."""
        if self.regularization == "paper":
            return paper.paper_regularization(self.optimizer, self.sigma)
        return float(self.regularization)


def noisy_splits(data: Dataset, input_noise: float, label_noise: float, seed: int):
    """The training and validation splits of `data` with noise, and the clean test split.

    Returns:
        `((x_train, y_train), (x_val, y_val), (x_test, y_test))`, labels as integers.
    """
    noisy = []
    for offset, (images, labels) in enumerate(((data.x_train, data.y_train), (data.x_val, data.y_val))):
        noisy.append(
            (
                add_input_noise(images, input_noise, seed=2 * seed + offset),
                add_label_noise(labels, label_noise, data.num_classes, seed=2 * seed + offset),
            )
        )
    return noisy[0], noisy[1], (data.x_test, data.y_test)


def make_optimizer(name: str, learning_rate: float, sigma=None) -> keras.optimizers.Optimizer:
    """The optimizer of a run (Keras defaults otherwise, as in the paper).

    Args:
        name: `"sgd"` (GSmoothSGD), `"adam"` (GSmoothAdam) or `"svrg"`
            (GSmoothSVRG, one snapshot per epoch).
        learning_rate: The learning rate.
        sigma: σ (a float or schedule) handed to the smoothed model at
            `compile`; None for the plain CNN.
    """
    if name == "sgd":
        return optimizers.GSmoothSGD(learning_rate, sigma=sigma)
    if name == "adam":
        return optimizers.GSmoothAdam(learning_rate, sigma=sigma)
    if name == "svrg":
        return svrg.GSmoothSVRG(learning_rate, sigma=sigma)
    raise ValueError(f"make_optimizer: unknown optimizer {name!r}. Choose one of {OPTIMIZERS}.")


def needs_smoothing(optimizer: str, sigma) -> bool:
    """Whether a run trains the smoothed model: σ is not the float 0, or the optimizer is SVRG."""
    return optimizer == "svrg" or not (isinstance(sigma, (int, float)) and sigma == 0)


def build_model(input_shape, num_classes: int, smoothed: bool, regularization=0.0) -> keras.Model:
    """The paper's CNN, plain or smoothed (σ comes from the optimizer at `compile`).

    Args:
        input_shape: Shape of one image.
        num_classes: Number of classes.
        smoothed: Whether to return `smooth_model(paper_cnn(...))`.
        regularization: λ, as `keras_gsmooth.smooth_model` takes it.
    """
    model = paper_cnn(input_shape, num_classes)
    return smooth_model(model, regularization=regularization) if smoothed else model


def run_callbacks(optimizer: str, x_train, y_train, num_classes: int) -> list:
    """The callbacks an optimizer needs: SVRG's snapshot of the full gradient."""
    if optimizer == "svrg":
        return [svrg.SVRGSnapshot(x_train, _targets(y_train, num_classes), batch_size=256)]
    return []


def _targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return keras.utils.to_categorical(labels, num_classes).astype("float32")


def _loss(loss: str):
    if loss == "mse":
        return keras.losses.MeanSquaredError()
    if loss == "crossentropy":
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    raise ValueError(f"unknown loss {loss!r}. Choose one of {LOSSES}.")


def fit_and_evaluate(
    model: keras.Model,
    optimizer,
    splits,
    num_classes: int,
    *,
    loss: str = "mse",
    batch_size: int = 32,
    max_epochs: int = 25,
    patience: int = 2,
    callbacks: list | None = None,
    verbose: int = 1,
) -> dict:
    """Trains with early stopping on the validation loss and scores the test split.

    Args:
        model: A Keras model with logits as output.
        optimizer: A Keras optimizer.
        splits: `((x_train, y_train), (x_val, y_val), (x_test, y_test))`,
            integer labels (see `noisy_splits`).
        num_classes: Number of classes (labels become one-hot targets).
        loss: `"mse"` (the paper) or `"crossentropy"`.
        batch_size: Batch size.
        max_epochs: At most this many epochs.
        patience: Early-stopping patience in epochs; the best weights (lowest
            validation loss) are restored.
        callbacks: More Keras callbacks.
        verbose: Keras verbosity of `fit` (1: a progress bar per epoch).

    Returns:
        A dict with `epochs_run`, `val_accuracy` (at the restored weights),
        `test_accuracy`, `test_loss` and `seconds` (wall time of `fit`).
    """
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    model.compile(optimizer=optimizer, loss=_loss(loss), metrics=["categorical_accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(
        x_train,
        _targets(y_train, num_classes),
        batch_size=batch_size,
        epochs=max_epochs,
        validation_data=(x_val, _targets(y_val, num_classes)),
        callbacks=[stop, *(callbacks or [])],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    _, val_accuracy = model.evaluate(x_val, _targets(y_val, num_classes), batch_size=256, verbose=0)
    test_loss, test_accuracy = model.evaluate(x_test, _targets(y_test, num_classes), batch_size=256, verbose=0)
    return {
        "epochs_run": len(history.history["loss"]),
        "val_accuracy": float(val_accuracy),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "seconds": round(seconds, 3),
    }


class UpdateNorms(keras.callbacks.Callback):
    """Records ‖x_t − x_{t−1}‖, the norm of every training update (appendix F.2).

    A probe for `ImageExperiment`: `fields` names what `results()` returns,
    the mean and standard deviation of the update norm over all steps.
    """

    fields = ("update_norm_mean", "update_norm_std")

    def __init__(self):
        super().__init__()
        self.norms = []
        self._before = None

    def _weights(self):
        return np.concatenate([np.ravel(keras.ops.convert_to_numpy(v.value)) for v in self.model.trainable_variables])

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self._weights()

    def on_train_batch_end(self, batch, logs=None):
        self.norms.append(float(np.linalg.norm(self._weights() - self._before)))

    def results(self) -> dict:
        return {"update_norm_mean": float(np.mean(self.norms)), "update_norm_std": float(np.std(self.norms))}


class ImageExperiment:
    """Runs `ImageCell`s; loads each data set once and keeps it.

    Args:
        verbose: Keras verbosity of each run's `fit`.
        validation_fraction: Fraction of the training data used for early stopping.
        test_size: Keep at most this many test images (None: all).
        probes: Callback classes (like `UpdateNorms`) instantiated for every
            run; each has a `fields` attribute and a `results()` method whose
            values join the run's results.

    Attributes:
        result_fields: The names of the values each run returns.

    Example:

    ```python
    experiment = ImageExperiment(verbose=0)
    metrics = experiment(ImageCell("mnist_sample", 0.5, 0.2, "sgd", 0.1, 1e-2, "1e-5", seed=0))
    ```
    """

    base_fields = ("data_source", "fallback", "epochs_run", "val_accuracy", "test_accuracy", "test_loss", "seconds")

    def __init__(
        self, verbose: int = 1, validation_fraction: float = 0.1, test_size: int | None = None, probes: tuple = ()
    ):
        self.verbose = verbose
        self.validation_fraction = validation_fraction
        self.test_size = test_size
        self.probes = tuple(probes)
        self.result_fields = self.base_fields + tuple(field for probe in self.probes for field in probe.fields)
        self._data = {}

    def data(self, cell: ImageCell) -> Dataset:
        key = (cell.dataset, cell.train_size, cell.allow_fallback)
        if key not in self._data:
            self._data[key] = load_dataset(
                cell.dataset,
                validation_fraction=self.validation_fraction,
                train_size=cell.train_size or None,
                test_size=self.test_size,
                allow_fallback=cell.allow_fallback,
            )
        return self._data[key]

    def __call__(self, cell: ImageCell) -> dict:
        data = self.data(cell)
        keras.backend.clear_session()
        keras.utils.set_random_seed(cell.seed)
        smoothed = needs_smoothing(cell.optimizer, cell.sigma)
        model = build_model(data.input_shape, data.num_classes, smoothed, cell.resolved_regularization())
        splits = noisy_splits(data, cell.input_noise, cell.label_noise, cell.seed)
        probes = [probe() for probe in self.probes]
        metrics = fit_and_evaluate(
            model,
            make_optimizer(cell.optimizer, cell.learning_rate, cell.sigma if smoothed else None),
            splits,
            data.num_classes,
            loss=cell.loss,
            batch_size=cell.batch_size,
            max_epochs=cell.max_epochs,
            patience=cell.patience,
            callbacks=run_callbacks(cell.optimizer, *splits[0], data.num_classes) + probes,
            verbose=self.verbose,
        )
        for probe in probes:
            metrics.update(probe.results())
        return {"data_source": data.source, "fallback": data.fallback, **metrics}
