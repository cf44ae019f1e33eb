"""`SmoothMultiply`: a product of variables and the variance penalty of its perturbed factors."""

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
        self.perturbed = None if perturbed is None else [bool(flag) for flag in perturbed]

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
        config = super().get_config()
        config.update({"sigma": self._sigma_constant, "regularization": self.regularization, "perturbed": self.perturbed})
        return config
