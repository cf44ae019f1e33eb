"""`keras_gsmooth.schedules.get`: turn what a user passes as `sigma` into a schedule."""

from numbers import Real

import keras

from keras_gsmooth.schedules.base import Constant
from keras_gsmooth.schedules.base import SigmaSchedule
from keras_gsmooth.schedules.base import validate_schedule
from keras_gsmooth.schedules.callable import Callable
from keras_gsmooth.schedules.decay import CosineDecay
from keras_gsmooth.schedules.decay import ExponentialDecay
from keras_gsmooth.schedules.decay import InverseTimeDecay
from keras_gsmooth.schedules.decay import PiecewiseConstant

# Short class names a config may use, as Keras's own schedules allow.
_SCHEDULE_CLASSES = {
    schedule.__name__: schedule
    for schedule in (Constant, Callable, PiecewiseConstant, ExponentialDecay, InverseTimeDecay, CosineDecay)
}


def get(identifier) -> SigmaSchedule:
    """Returns the σ schedule that `identifier` describes.

    Args:
        identifier: A float `>= 0` (a `Constant` schedule), a
            `SigmaSchedule`, a serialized schedule (a dict from
            `keras.saving.serialize_keras_object`, or the short form
            `{"class_name": "ExponentialDecay", "config": {...}}`), or a
            plain callable `step -> σ` (wrapped in `Callable`).

    Returns:
        A validated `SigmaSchedule`.

    Raises:
        ValueError: if σ is negative, NaN or infinite, or the identifier is
            of no supported kind.
    """
    if isinstance(identifier, Real) and not isinstance(identifier, bool):
        return Constant(identifier)
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier, custom_objects=_SCHEDULE_CLASSES)
    if callable(identifier) and not isinstance(identifier, SigmaSchedule):
        identifier = Callable(identifier)
    if isinstance(identifier, SigmaSchedule):
        validate_schedule(identifier, owner="keras_gsmooth.schedules.get")
        return identifier
    raise ValueError(
        "`sigma` must be a float >= 0, a keras_gsmooth σ schedule "
        f"(keras_gsmooth.schedules) or a callable step -> σ. Received: sigma={identifier!r}"
    )
