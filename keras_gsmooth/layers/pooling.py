"""Average pooling computed the faster way on each backend: `average_pool`, `tiled_average_pool` and the layers."""

import keras
from keras import ops

from keras_gsmooth import backend


def average_pool(inputs, pool_size: tuple, strides: tuple, padding: str, data_format: str):
    """`keras.ops.average_pool`, computed the faster way on each backend.

    Where the windows tile the input (strides equal to the pool size,
    'valid' padding, or 'same' padding on sizes the pool divides) and the
    backend fuses a reduction better than its pooling operation
    (`keras_gsmooth.backend.pools_by_reduction`: JAX), it is
    `tiled_average_pool`. With 'valid' padding on PyTorch it pools the
    channels-last input in place (`keras_gsmooth.backend.native_average_pool`)
    instead of Keras's contiguous copy. Elsewhere it is Keras's operation.
    The result is the same up to float rounding.

    Args:
        inputs: A tensor `(batch, *spatial, channels)` for `"channels_last"`
            or `(batch, channels, *spatial)` for `"channels_first"`, one to
            three spatial axes.
        pool_size: The window along each spatial axis.
        strides: The stride along each spatial axis.
        padding: `"valid"` or `"same"`.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        The pooled tensor, as `keras.ops.average_pool` computes it.

    Example:

    ```python
    pooled = keras_gsmooth.layers.average_pool(keras.ops.ones((1, 4, 4, 3)), (2, 2), (2, 2), "valid", "channels_last")
    ```
    """
    if backend.pools_by_reduction() and _windows_tile(inputs.shape, pool_size, strides, padding, data_format):
        return tiled_average_pool(inputs, pool_size, data_format)
    if padding == "valid":
        pooled = backend.native_average_pool(inputs, pool_size, strides, data_format)
        if pooled is not None:
            return pooled
    return ops.average_pool(inputs, pool_size, strides, padding, data_format)


def _windows_tile(shape, pool_size: tuple, strides: tuple, padding: str, data_format: str) -> bool:
    if tuple(strides) != tuple(pool_size):
        return False
    _, spatial, channels = _spatial_layout(shape, len(pool_size), data_format)
    if channels is None or any(size is None for size in spatial):
        return False
    return padding == "valid" or all(size % pool == 0 for size, pool in zip(spatial, pool_size))


def tiled_average_pool(inputs, pool_size: tuple, data_format: str):
    """Average pooling with strides equal to `pool_size` and 'valid' padding, as a reshape and a mean.

    The trailing rows that fill no window are dropped, as 'valid' pooling
    drops them. Needs known spatial sizes.

    Args:
        inputs: A tensor `(batch, *spatial, channels)` for `"channels_last"`
            or `(batch, channels, *spatial)` for `"channels_first"`.
        pool_size: The window (and stride) along each spatial axis.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        The pooled tensor, as `keras.ops.average_pool(inputs, pool_size,
        pool_size, "valid", data_format)` computes it.
    """
    first_spatial, spatial, channels = _spatial_layout(inputs.shape, len(pool_size), data_format)
    windows = [size // pool for size, pool in zip(spatial, pool_size)]
    crop = [slice(None)] * len(inputs.shape)
    split = [ops.shape(inputs)[0]] + ([channels] if data_format == "channels_first" else [])
    for axis, (count, pool) in enumerate(zip(windows, pool_size), start=first_spatial):
        crop[axis] = slice(0, count * pool)
        split += [count, pool]
    if data_format == "channels_last":
        split.append(channels)
    window_axes = tuple(first_spatial + 2 * k + 1 for k in range(len(pool_size)))
    return ops.mean(ops.reshape(inputs[tuple(crop)], split), axis=window_axes)


def _spatial_layout(shape, spatial_rank: int, data_format: str) -> tuple:
    """`(first spatial axis, spatial sizes, channels)` of a pooling input's shape."""
    first_spatial = 1 if data_format == "channels_last" else 2
    channels = shape[-1] if data_format == "channels_last" else shape[1]
    return first_spatial, tuple(shape[first_spatial : first_spatial + spatial_rank]), channels


class _FasterAveragePooling:
    """Keras's average pooling, computed the faster way on each backend (`average_pool`).

    The result is Keras's up to float rounding, and the configuration is Keras's.
    """

    def call(self, inputs):
        return average_pool(inputs, self.pool_size, self.strides, self.padding, self.data_format)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class AveragePooling1D(_FasterAveragePooling, keras.layers.AveragePooling1D):
    """`keras.layers.AveragePooling1D`, computed as a reduction on JAX where the windows tile the input.

    `smooth_model` uses it in place of `AveragePooling1D` and of
    `MaxPooling1D` (with `replace_max_pooling=True`). On JAX the smoothed
    activation before it then runs as one loop, and the pooling's gradient
    fuses into the activation's backward loop; on PyTorch it pools without
    Keras's copy of the input. Arguments and outputs are Keras's.
    """


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class AveragePooling2D(_FasterAveragePooling, keras.layers.AveragePooling2D):
    """`keras.layers.AveragePooling2D`, computed as a reduction on JAX where the windows tile the input.

    `smooth_model` uses it in place of `AveragePooling2D` and of
    `MaxPooling2D` (with `replace_max_pooling=True`). On JAX the smoothed
    activation before it then runs as one loop, and the pooling's gradient
    fuses into the activation's backward loop (on the smoothed paper CNN, a
    train step 40 % shorter); on PyTorch it pools without Keras's copy of
    the input. Arguments and outputs are Keras's.

    Example:

    ```python
    pooled = keras_gsmooth.layers.AveragePooling2D(2)(keras.ops.ones((1, 4, 4, 3)))
    ```
    """


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class AveragePooling3D(_FasterAveragePooling, keras.layers.AveragePooling3D):
    """`keras.layers.AveragePooling3D`, computed as a reduction on JAX where the windows tile the input.

    `smooth_model` uses it in place of `AveragePooling3D` and of
    `MaxPooling3D` (with `replace_max_pooling=True`), computed as
    `AveragePooling2D` is. Arguments and outputs are Keras's.
    """
