"""`PenalizedLayer`: what the smoothed layers that add their own penalty share."""

from keras import ops

from keras_gsmooth import eager_ops
from keras_gsmooth.sigma import SigmaConsumer
from keras_gsmooth.validation import check_regularization


class PenalizedLayer(SigmaConsumer):
    """Mixin of the smoothed layers that add a per-sample penalty to their losses.

    It keeps the layer's constant σ (until a `SmoothedModel` binds the
    layer), checks its penalty weight λ with errors that name the layer, and
    adds a penalty summed over the batch as a per-sample mean, so that the
    total loss does not change with the batch size.
    """

    def _init_penalty(self, sigma, regularization, argument: str = "regularization") -> float:
        """Keeps `sigma` as the layer's constant σ and returns `regularization`, both checked."""
        owner = f"{self.__class__.__name__} {self.name!r}"
        self._init_sigma(sigma, owner=owner)
        return check_regularization(regularization, argument=argument, owner=owner)

    def _add_per_sample_penalty(self, weight, total, inputs) -> None:
        """Adds `weight · total / batch size` to the losses; `total` is summed over the batch of `inputs`.

        A batch size known when the step runs (always on JAX and PyTorch)
        divides as a Python int, with no conversion to a tensor first.
        """
        batch_size = ops.shape(inputs)[0]
        if not isinstance(batch_size, int):
            batch_size = ops.cast(batch_size, "float32")
        self.add_loss(weight * (eager_ops.cast(total, "float32") / batch_size))
