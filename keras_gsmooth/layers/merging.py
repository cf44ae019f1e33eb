"""`SmoothMultiply` and `SmoothDot`: products of variables and the variance penalty of their perturbed factors."""

import keras
from keras import ops

from keras_gsmooth.layers.penalized import PenalizedLayer


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothMultiply(keras.layers.Multiply, PenalizedLayer):
    """Multiplies its inputs (as `keras.layers.Multiply`) and adds the variance penalty of the product.

    The smoothed replacement of `keras.layers.Multiply`. Each input `a_j`
    that is a variable of the lifted objective is perturbed independently,
    `ã_j = a_j + σu_j` with `u_j ~ N(0, 1/2)`; an input that is raw data is
    not. The product's mean is then the product itself, so the output is
    Keras's, and when `regularization = λ > 0` the layer adds
    `λ · Σ_units Var` per sample, averaged over the batch, to its losses, where

    `Var = Π_j (a_j² + [j perturbed]·σ²/2) − Π_j a_j²`,

    computed as a sum of non-negative terms (for two perturbed inputs,
    `(σ²/2)(a² + b²) + σ⁴/4`), so it cannot cancel. Inputs of different
    shapes broadcast as in `keras.layers.Multiply`, and where a Keras mask
    hides an input's entry, Keras multiplies by 1 instead: a constant,
    which the penalty does not perturb.

    Args:
        sigma: The smoothing radius used while the layer is not bound to a
            `keras_gsmooth.SmoothedModel`'s σ, a float `>= 0`.
        regularization: The penalty weight λ `>= 0` (0 switches it off).
        perturbed: One bool per input: whether it is perturbed (False for
            raw data). None perturbs every input.
        **kwargs: Base layer arguments (`name`, `dtype`, …).

    Raises:
        ValueError: for a negative, NaN or infinite `sigma` or
            `regularization`, or a `perturbed` list whose length is not the
            number of inputs.

    Example:

    ```python
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8)(inputs)
    gate = keras.layers.Dense(8, activation="sigmoid")(inputs)
    gated = keras_gsmooth.layers.SmoothMultiply(regularization=1e-5)([hidden, gate])
    ```
    """

    def __init__(self, sigma: float = 0.0, regularization: float = 0.0, perturbed=None, **kwargs):
        super().__init__(**kwargs)
        self.regularization = self._init_penalty(sigma, regularization)
        self.perturbed = _flags(perturbed)

    def call(self, inputs, mask=None):
        outputs = super().call(inputs)
        if self.regularization > 0.0:
            summed_variance = ops.sum(self._product_variance(inputs, mask or [None] * len(inputs)))
            self._add_per_sample_penalty(self.regularization, summed_variance, inputs[0])
        return outputs

    def compute_output_spec(self, inputs, mask=None):
        return super().compute_output_spec(inputs)

    def _product_variance(self, inputs, masks):
        """`Π(a² + [perturbed]·s²) − Π a²`, built up input by input from non-negative terms."""
        perturbed = self.perturbed if self.perturbed is not None else [True] * len(inputs)
        if len(perturbed) != len(inputs):
            raise ValueError(
                f"SmoothMultiply {self.name!r}: `perturbed` has {len(perturbed)} entries, but the layer "
                f"was called on {len(inputs)} inputs. Give one bool per input."
            )
        half_sigma2 = 0.5 * ops.square(self.current_sigma("float32"))
        rank = max(len(x.shape) for x in inputs)
        variance, moment = 0.0, 1.0  # Π(a² + [perturbed]·s²) − Π a², and Π(a² + [perturbed]·s²)
        for x, mask, is_perturbed in zip(inputs, masks, perturbed):
            square = ops.square(ops.cast(x, "float32"))
            kept = None
            if mask is not None:  # Keras multiplies by 1 where the mask hides an entry
                kept = ops.expand_dims(ops.cast(mask, "float32"), axis=-1)
                square = kept * square + (1.0 - kept)
            for _ in range(rank - len(x.shape)):  # Keras's Multiply expands lower ranks at axis 1
                square = ops.expand_dims(square, axis=1)
                kept = None if kept is None else ops.expand_dims(kept, axis=1)
            noise = 0.0 if not is_perturbed else (half_sigma2 if kept is None else half_sigma2 * kept)
            variance = square * variance + noise * moment
            moment = (square + noise) * moment
        return variance

    def get_config(self) -> dict:
        return {**super().get_config(), **_product_config(self)}


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothDot(keras.layers.Dot, PenalizedLayer):
    """A dot product of two inputs (as `keras.layers.Dot`) with the variance penalty of its perturbed factors.

    The smoothed replacement of `keras.layers.Dot` without normalisation.
    Each output unit is a sum `Σ_k a_k b_k` over the contracted axis of
    products of independent factors, `ã = a + σu`, `b̃ = b + σv` (raw data
    not perturbed), so its mean is the dot product itself and its variance
    is `Σ_k [(a_k² + s_a)(b_k² + s_b) − a_k² b_k²]`, with `s = σ²/2` for a
    perturbed factor and 0 for raw data. When `regularization = λ > 0` the
    layer adds `λ · Σ_units Var` per sample, averaged over the batch, to its
    losses, computed as the sum of the non-negative terms
    `s_b·a²·1 + s_a·1·b² + s_a·s_b·1·1`, each a dot product over the same
    axes, so it cannot cancel.

    Args:
        axes: As `keras.layers.Dot`.
        sigma: The smoothing radius used while the layer is not bound to a
            `keras_gsmooth.SmoothedModel`'s σ, a float `>= 0`.
        regularization: The penalty weight λ `>= 0` (0 switches it off).
        perturbed: Two bools: whether each input is perturbed (False for
            raw data). None perturbs both.
        **kwargs: Base layer arguments (`name`, `dtype`, …).

    Raises:
        ValueError: for `normalize=True` (a cosine similarity is not a
            product of its inputs), a negative, NaN or infinite `sigma` or
            `regularization`, or a `perturbed` that is not two bools.

    Example:

    ```python
    users, items = keras.Input((8,)), keras.Input((8,))
    user_vector = keras.layers.Dense(4)(users)
    item_vector = keras.layers.Dense(4)(items)
    score = keras_gsmooth.layers.SmoothDot(axes=1, regularization=1e-5)([user_vector, item_vector])
    ```
    """

    def __init__(self, axes, sigma: float = 0.0, regularization: float = 0.0, perturbed=None, **kwargs):
        super().__init__(axes, **kwargs)
        if self.normalize:
            raise ValueError(
                f"SmoothDot {self.name!r}: `normalize=True` computes a cosine similarity, which is "
                "not a product of the inputs and has no closed-form smoothing. Pass `normalize=False`."
            )
        self.regularization = self._init_penalty(sigma, regularization)
        if perturbed is not None and len(perturbed) != 2:
            raise ValueError(
                f"SmoothDot {self.name!r}: `perturbed` must give one bool for each of the two "
                f"inputs. Received: perturbed={perturbed!r}"
            )
        self.perturbed = _flags(perturbed)

    def call(self, inputs):
        outputs = super().call(inputs)
        if self.regularization > 0.0:
            self._add_per_sample_penalty(self.regularization, ops.sum(self._dot_variance(inputs)), inputs[0])
        return outputs

    def _dot_variance(self, inputs):
        """`s_b·(a²·1) + s_a·(1·b²) + s_a·s_b·(1·1)`, each a dot product over the layer's axes."""
        half_sigma2 = 0.5 * ops.square(self.current_sigma("float32"))
        a, b = (ops.cast(x, "float32") for x in inputs)
        perturbed = self.perturbed if self.perturbed is not None else [True, True]
        noise_a, noise_b = (half_sigma2 if flag else 0.0 for flag in perturbed)
        dot = super().call
        ones_a, ones_b = ops.ones_like(a), ops.ones_like(b)
        return noise_b * dot([ops.square(a), ones_b]) + noise_a * dot([ones_a, ops.square(b)]) + noise_a * noise_b * dot([ones_a, ones_b])

    def get_config(self) -> dict:
        return {**super().get_config(), **_product_config(self)}


def _flags(perturbed):
    """`perturbed` as a list of bools, or None (every input perturbed)."""
    return None if perturbed is None else [bool(flag) for flag in perturbed]


def _product_config(layer) -> dict:
    """The configuration a smoothed product adds to its Keras layer's."""
    return {"sigma": layer._sigma_constant, "regularization": layer.regularization, "perturbed": layer.perturbed}
