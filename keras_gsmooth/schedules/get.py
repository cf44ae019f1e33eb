"""`keras_gsmooth.schedules.get`: turn what a user passes as `sigma` into a schedule."""

from numbers import Real

import keras

from keras_gsmooth.schedules.base import Constant
from keras_gsmooth.schedules.base import SigmaSchedule
from keras_gsmooth.schedules.base import validate_schedule


def get(identifier) -> SigmaSchedule:
    """Returns the σ schedule that `identifier` describes.

    Args:
        identifier: A float `>= 0` (a `Constant` schedule), a
            `SigmaSchedule`, or a serialized schedule (a dict from
            `keras.saving.serialize_keras_object`).

    Returns:
        A validated `SigmaSchedule`.

    Raises:
        ValueError: if σ is negative, NaN or infinite, or the identifier is
            of no supported kind.
    """
    if isinstance(identifier, Real) and not isinstance(identifier, bool):
        return Constant(identifier)
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, SigmaSchedule):
        validate_schedule(identifier, owner="keras_gsmooth.schedules.get")
        return identifier
    raise ValueError(
        "`sigma` must be a float >= 0 or a keras_gsmooth σ schedule "
        f"(keras_gsmooth.schedules). Received: sigma={identifier!r}"
    )
