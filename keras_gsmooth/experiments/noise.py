"""The noise of the paper's experiments: Gaussian input noise and label noise.

Both functions work on NumPy arrays before training (data preparation, not
part of any model), are reproducible by seed, and return new arrays: the
caller's arrays are never modified.
"""

import numpy as np


def add_input_noise(images: np.ndarray, sd: float, seed: int) -> np.ndarray:
    """Adds Gaussian noise of standard deviation `sd` to every pixel.

    The result is not clipped to [0, 1] (as in the paper), so the added noise
    has exactly the requested distribution.

    Args:
        images: Array of images (any shape), pixels in [0, 1].
        sd: Standard deviation of the noise, `>= 0`; 0 returns a copy.
        seed: Seed of the noise.

    Returns:
        A new float32 array of the same shape.

    Raises:
        ValueError: if `sd` is negative or not finite.

    Example:

    ```python
    noisy = add_input_noise(data.x_train, sd=0.5, seed=0)
    ```
    """
    if not np.isfinite(sd) or sd < 0:
        raise ValueError(f"add_input_noise: `sd` must be finite and >= 0. Received: sd={sd}")
    images = np.asarray(images, dtype="float32")
    noise = np.random.default_rng(seed).standard_normal(images.shape, dtype="float32")
    return images + np.float32(sd) * noise


def add_label_noise(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """Changes exactly `round(fraction * n)` labels, each to a different class.

    The changed labels are chosen uniformly without replacement; each gets a
    class drawn uniformly from the `num_classes - 1` other classes.

    Args:
        labels: Integer labels, shape `(n,)`, in `[0, num_classes)`.
        fraction: Fraction of labels to change, in [0, 1].
        num_classes: Number of classes, `>= 2`.
        seed: Seed of the choice of labels and of their new classes.

    Returns:
        A new int32 array of labels.

    Raises:
        ValueError: on a fraction outside [0, 1], fewer than 2 classes, or
            labels outside `[0, num_classes)`.

    Example:

    ```python
    noisy_labels = add_label_noise(data.y_train, fraction=0.2, num_classes=10, seed=0)
    ```
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"add_label_noise: `fraction` must be in [0, 1]. Received: fraction={fraction}")
    if num_classes < 2:
        raise ValueError(f"add_label_noise: `num_classes` must be >= 2. Received: num_classes={num_classes}")
    labels = np.array(labels, dtype="int32").reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"add_label_noise: labels must lie in [0, {num_classes}); found "
            f"[{labels.min()}, {labels.max()}]. Pass the right `num_classes`."
        )
    rng = np.random.default_rng(seed)
    changed = rng.choice(labels.size, int(round(fraction * labels.size)), replace=False)
    shift = rng.integers(1, num_classes, size=changed.size)
    labels[changed] = (labels[changed] + shift) % num_classes
    return labels
