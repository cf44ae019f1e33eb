"""Native CPU kernels of the smoothed relu for eager PyTorch, compiled from C++ at first use.

On a small tensor, an eager PyTorch operation costs more in dispatch than in
arithmetic, and the smoothed relu's closed form is a few dozen of them: on
the paper CNN at batch 1 (20,000 values) the forward pass took about 270 µs,
from about 30 operations. `kernels/smoothed_leaky_relu_c.cc` exposes the
element loops of `kernels/smoothed_leaky_relu.h` (the ones TensorFlow's
native kernels run, `native_tensorflow.py`) as plain C functions, which this
module calls through `ctypes` on the tensors' memory from two
`torch.autograd.Function`s: one loop forward, giving `h_σ` and `Σ Var_σ`,
and one backward, which recomputes Φ and p from the input. Fused with the
non-overlapping average pooling after the activation, the forward loop
pools as it goes and sums the pooled output's squares (for its penalty),
and the backward loop takes that sum's gradient as it reads the pooled one.

They serve float32 CPU tensors that the fused `torch.compile` kernels do not
take (`keras_gsmooth.backend.uses_fused_torch_kernels`: in `"auto"`, those of
fewer than `keras_gsmooth.config.AUTO_MIN_ELEMENTS` elements), outside a
`torch.compile` trace, on one thread. `keras_gsmooth.config.set_native_torch_kernels`
switches them on, off or to `"auto"`. The library is compiled with the C++
compiler alone (no PyTorch headers) and cached (`keras_gsmooth.native_build`).
"""

import ctypes
import functools

import keras

from keras_gsmooth import backend
from keras_gsmooth import config
from keras_gsmooth import native_build
from keras_gsmooth.native_build import KernelBuildError

_SOURCE = native_build.KERNELS / "smoothed_leaky_relu_c.cc"
_WHAT = "the native PyTorch kernels"
_FALLBACK = "The smoothed relu runs as eager PyTorch operations, which cost more on small CPU tensors."


def smoothed_leaky_relu(x, sigma, alpha: float, sigma_derivatives):
    """`(h_σ, Σ Var_σ)` of leaky relu by the native kernels, or None where they do not apply.

    Args:
        x: The pre-activation tensor.
        sigma: σ, a scalar tensor.
        alpha: The slope for `x < 0` (0 for relu).
        sigma_derivatives: `sigma_derivatives(x, sigma) -> (∂h_σ/∂σ, ∂Var_σ/∂σ)`,
            elementwise, for the gradient with respect to σ (computed only
            when autograd asks for it).

    Returns:
        `(mean, summed_variance)` with closed-form gradients, or None.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    if not _applies(x):
        return None
    return _functions()[0].apply(x, sigma, alpha, sigma_derivatives)


def smoothed_leaky_relu_average_pool(x, sigma, alpha: float, pool_size: tuple, sigma_derivatives):
    """`(average_pool(h_σ), Σ Var_σ, Σ average_pool(h_σ)²)` of leaky relu by the native kernels, or None.

    The pooling is Keras's with strides equal to `pool_size`, 'valid'
    padding and channels last, over one or two spatial axes; the variance
    sums over every element of `x`. The kernels apply where
    `smoothed_leaky_relu`'s do.

    Args:
        x: The pre-activation tensor, `(batch, *spatial, channels)`.
        sigma: σ, a scalar tensor.
        alpha: The slope for `x < 0` (0 for relu).
        pool_size: The window along each spatial axis.
        sigma_derivatives: As for `smoothed_leaky_relu`.

    Returns:
        `(pooled_mean, summed_variance, pooled_sum_of_squares)` with
        closed-form gradients, or None where no kernel applies.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    if len(pool_size) not in (1, 2) or len(x.shape) != len(pool_size) + 2 or not _applies(x):
        return None
    return _functions()[1].apply(x, sigma, alpha, tuple(pool_size), sigma_derivatives)


def _applies(x) -> bool:
    """Whether the native kernels serve `x` (see the module's docstring)."""
    if keras.backend.backend() != "torch" or config.native_torch_kernels() is False:
        return False
    import torch

    if not (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.device.type == "cpu"):
        return False
    if torch.compiler.is_compiling() or backend.uses_fused_torch_kernels(x):
        return False
    return kernels_available()


def kernels_available() -> bool:
    """Whether the native kernels serve the current backend and setting.

    On PyTorch with the setting `True`, or `"auto"` with kernels that
    compile (else a warning, once). Compiles them first where the cache does
    not hold them.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    setting = config.native_torch_kernels()
    if setting is False or keras.backend.backend() != "torch":
        return False
    return native_build.loads(setting, _library, _FALLBACK, "set_native_torch_kernels")


@functools.cache
def _library():
    """The loaded library with its functions' C signatures, compiled first where the cache does not hold it."""
    path = native_build.built_library("smoothed_leaky_relu_c", _SOURCE, "", _build_command, _WHAT)
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        raise KernelBuildError(
            f"keras_gsmooth: loading {_WHAT} ({path}) failed: {error}. Delete the file to compile them again."
        ) from error
    pointer, size, number = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    geometry = [size] * 6  # batch, height, width, channels, pool height, pool width
    library.keras_gsmooth_smoothed_leaky_relu.restype = number
    library.keras_gsmooth_smoothed_leaky_relu.argtypes = [pointer, pointer, size, number, number]
    library.keras_gsmooth_smoothed_leaky_relu_grad.restype = None
    library.keras_gsmooth_smoothed_leaky_relu_grad.argtypes = [pointer] * 3 + [size] + [number] * 3
    library.keras_gsmooth_smoothed_leaky_relu_average_pool.restype = None
    library.keras_gsmooth_smoothed_leaky_relu_average_pool.argtypes = [pointer] * 4 + geometry + [number] * 2
    library.keras_gsmooth_smoothed_leaky_relu_average_pool_grad.restype = None
    library.keras_gsmooth_smoothed_leaky_relu_average_pool_grad.argtypes = [pointer] * 4 + geometry + [number] * 4
    return library


def _build_command(output) -> list:
    return [native_build.compiler(), *native_build.OWN_FLAGS, str(_SOURCE), "-o", str(output)]


def _image_geometry(shape, pool_size: tuple) -> tuple:
    """`(batch, height, width, channels, pool height, pool width)`: one spatial axis is a height of 1."""
    if len(pool_size) == 1:
        return (shape[0], 1, shape[1], shape[2], 1, pool_size[0])
    return (*shape, *pool_size)


@functools.cache
def _functions():
    """The two `torch.autograd.Function`s: the activation alone, and fused with the pooling."""
    import torch

    def sigma_gradient(ctx, x, sigma, upstream_mean, upstream_summed, pooled):
        """Σ upstream·∂h_σ/∂σ (pooled like the output) + upstream_summed·Σ ∂Var_σ/∂σ."""
        mean_derivative, variance_derivative = ctx.sigma_derivatives(x, sigma)
        return (upstream_mean * pooled(mean_derivative)).sum() + upstream_summed * variance_derivative.sum()

    class SmoothedLeakyRelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, sigma, alpha, sigma_derivatives):
            x = x.contiguous()
            mean = torch.empty_like(x)
            summed = _library().keras_gsmooth_smoothed_leaky_relu(
                x.data_ptr(), mean.data_ptr(), x.numel(), float(sigma), alpha
            )
            ctx.save_for_backward(x, sigma)
            ctx.alpha, ctx.sigma_derivatives = alpha, sigma_derivatives
            return mean, torch.tensor(summed, dtype=torch.float32)

        @staticmethod
        def backward(ctx, upstream_mean, upstream_summed):
            x, sigma = ctx.saved_tensors
            gradient = None
            if ctx.needs_input_grad[0]:
                upstream = upstream_mean.contiguous()
                gradient = torch.empty_like(x)
                _library().keras_gsmooth_smoothed_leaky_relu_grad(
                    x.data_ptr(),
                    upstream.data_ptr(),
                    gradient.data_ptr(),
                    x.numel(),
                    float(sigma),
                    ctx.alpha,
                    float(upstream_summed),
                )
            gradient_sigma = None
            if ctx.needs_input_grad[1]:
                gradient_sigma = sigma_gradient(ctx, x, sigma, upstream_mean, upstream_summed, lambda t: t)
            return gradient, gradient_sigma, None, None

    class SmoothedLeakyReluAveragePool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, sigma, alpha, pool_size, sigma_derivatives):
            x = x.contiguous()
            geometry = _image_geometry(tuple(x.shape), pool_size)
            pooled = x.new_empty((x.shape[0], *(size // pool for size, pool in zip(x.shape[1:-1], pool_size)), x.shape[-1]))
            summed, squares = x.new_empty(()), x.new_empty(())
            _library().keras_gsmooth_smoothed_leaky_relu_average_pool(
                x.data_ptr(), pooled.data_ptr(), summed.data_ptr(), squares.data_ptr(), *geometry, float(sigma), alpha
            )
            ctx.save_for_backward(x, sigma, pooled)
            ctx.alpha, ctx.sigma_derivatives, ctx.pool_size, ctx.geometry = alpha, sigma_derivatives, pool_size, geometry
            return pooled, summed, squares

        @staticmethod
        def backward(ctx, upstream_pooled, upstream_summed, upstream_squares):
            x, sigma, pooled = ctx.saved_tensors
            gradient = None
            if ctx.needs_input_grad[0]:
                upstream = upstream_pooled.contiguous()
                gradient = torch.empty_like(x)
                _library().keras_gsmooth_smoothed_leaky_relu_average_pool_grad(
                    x.data_ptr(),
                    pooled.data_ptr(),
                    upstream.data_ptr(),
                    gradient.data_ptr(),
                    *ctx.geometry,
                    float(sigma),
                    ctx.alpha,
                    float(upstream_summed),
                    float(upstream_squares),
                )
            gradient_sigma = None
            if ctx.needs_input_grad[1]:
                # Σ pooled² adds 2·pooled per unit of its upstream gradient.
                upstream_mean = upstream_pooled + 2.0 * upstream_squares * pooled
                pool = functools.partial(_average_pool, pool_size=ctx.pool_size)
                gradient_sigma = sigma_gradient(ctx, x, sigma, upstream_mean, upstream_summed, pool)
            return gradient, gradient_sigma, None, None, None

    return SmoothedLeakyRelu, SmoothedLeakyReluAveragePool


def _average_pool(values, pool_size: tuple):
    """Channels-last, non-overlapping, 'valid' average pooling of a torch tensor."""
    import torch

    pooling = torch.nn.functional.avg_pool1d if len(pool_size) == 1 else torch.nn.functional.avg_pool2d
    channels_first = values.movedim(-1, 1)
    return pooling(channels_first, pool_size, pool_size).movedim(1, -1)
