"""Native TensorFlow CPU kernels of the smoothed relu, compiled from C++ at first use.

On a CPU, Keras trains a TensorFlow model without XLA, where a convolution
and its relu run as one oneDNN operation. The smoothed relu written with
`keras.ops` is a chain of a few dozen elementwise operations: without XLA
each is a pass over memory, and with XLA (which fuses them) the rest of the
step runs slower than oneDNN's. `kernels/smoothed_leaky_relu.cc` runs the
element loops of `kernels/smoothed_leaky_relu.h`, which evaluate the same
closed forms in one vectorised loop per pass, on TensorFlow's threads: the
forward pass gives `h_σ` and `Σ Var_σ`, the backward pass recomputes Φ and p
from the input instead of reading them from memory.

The source is compiled into a TensorFlow op library with TensorFlow's own
headers and flags (`tf.sysconfig`) and cached (`keras_gsmooth.native_build`). `keras_gsmooth.config.set_native_tensorflow_kernels`
switches the kernels on, off or to `"auto"`.

A smoothed relu followed by a non-overlapping average pooling
(`keras_gsmooth.layers.SmoothActivation` with `pool_size`) runs as one
kernel per pass, which reads the activation's input and writes the pooled
mean (forward), or reads the pooled gradient and writes the input's
(backward): `h_σ` in full is never written or read. The forward kernel also
sums the pooled mean's squares, for a penalty on the layer's output
(`output_penalty`), and the backward kernel adds that sum's gradient as it
reads the pooled gradient: the penalty costs no pass of its own.
"""

import functools

import keras

from keras_gsmooth import config
from keras_gsmooth import native_build
from keras_gsmooth.native_build import KernelBuildError

_SOURCE = native_build.KERNELS / "smoothed_leaky_relu.cc"
_WHAT = "the native TensorFlow kernels"
_FALLBACK = "The smoothed relu runs as keras.ops operations, compiled with XLA, which is slower on a CPU."


def smoothed_leaky_relu(x, sigma, alpha: float, sigma_derivatives):
    """`(h_σ, Σ Var_σ)` of leaky relu by the native kernels, or None where they do not apply.

    They apply on the TensorFlow backend, to float32 tensors, outside XLA
    and outside a trace being saved (a SavedModel stays portable), when
    `keras_gsmooth.config.native_tensorflow_kernels()` allows it (`"auto"`
    also needs a CPU-only TensorFlow and kernels that compile).

    Args:
        x: The pre-activation tensor.
        sigma: σ, a float32 scalar tensor.
        alpha: The slope for `x < 0` (0 for relu).
        sigma_derivatives: `sigma_derivatives(x, sigma) -> (∂h_σ/∂σ, ∂Var_σ/∂σ)`,
            elementwise, for the gradient with respect to σ (TensorFlow
            prunes it from a compiled step when σ is not differentiated).

    Returns:
        `(mean, summed_variance)` with closed-form gradients, or None.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    library = _library_for(x)
    if library is None:
        return None
    return _with_closed_form_gradients(
        lambda x, sigma: library.keras_gsmooth_smoothed_leaky_relu(x, sigma, alpha=alpha),
        lambda x, sigma, outputs, upstreams: library.keras_gsmooth_smoothed_leaky_relu_grad(
            x, sigma, *upstreams, alpha=alpha
        ),
        lambda mean_derivative: mean_derivative,
        sigma_derivatives,
    )(x, sigma)


def smoothed_leaky_relu_average_pool(x, sigma, alpha: float, pool_size: tuple, sigma_derivatives):
    """`(average_pool(h_σ), Σ Var_σ, Σ average_pool(h_σ)²)` of leaky relu by one native kernel, or None.

    The pooling is Keras's with strides equal to `pool_size`, 'valid'
    padding and channels last; the variance sums over every element of `x`,
    including trailing rows and columns that fill no window. The kernels
    apply where `smoothed_leaky_relu`'s do, to inputs with one or two
    spatial axes.

    Args:
        x: The pre-activation tensor, `(batch, *spatial, channels)`.
        sigma: σ, a float32 scalar tensor.
        alpha: The slope for `x < 0` (0 for relu).
        pool_size: The window along each spatial axis.
        sigma_derivatives: As for `smoothed_leaky_relu`.

    Returns:
        `(pooled_mean, summed_variance, pooled_sum_of_squares)` with
        closed-form gradients, or None where no kernel applies.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    if len(pool_size) not in (1, 2) or len(x.shape) != len(pool_size) + 2:
        return None
    library = _library_for(x)
    if library is None:
        return None
    import tensorflow as tf

    pool_height, pool_width = (1, *pool_size) if len(pool_size) == 1 else pool_size
    attributes = {"alpha": alpha, "pool_height": pool_height, "pool_width": pool_width}

    def as_image(tensor):
        return tensor[:, tf.newaxis] if len(pool_size) == 1 else tensor

    def as_input_layout(tensor):
        return tensor[:, 0] if len(pool_size) == 1 else tensor

    def forward(x, sigma):
        pooled, summed, squares = library.keras_gsmooth_smoothed_leaky_relu_average_pool(
            as_image(x), sigma, **attributes
        )
        return as_input_layout(pooled), summed, squares

    def backward(x, sigma, outputs, upstreams):
        upstream_pooled, upstream_summed, upstream_squares = upstreams
        return as_input_layout(
            library.keras_gsmooth_smoothed_leaky_relu_average_pool_grad(
                as_image(x),
                sigma,
                as_image(outputs[0]),
                as_image(upstream_pooled),
                upstream_summed,
                upstream_squares,
                **attributes,
            )
        )

    def pooled(mean_derivative):
        window = (pool_height, pool_width)
        return as_input_layout(tf.nn.avg_pool2d(as_image(mean_derivative), window, window, "VALID"))

    return _with_closed_form_gradients(forward, backward, pooled, sigma_derivatives)(x, sigma)


def _library_for(x):
    """The op library where the native kernels apply to `x` (see `smoothed_leaky_relu`), else None."""
    if not kernels_available():
        return None
    import tensorflow as tf

    if tf.convert_to_tensor(x).dtype != tf.float32 or _in_portable_trace():
        return None
    return _library()


def _with_closed_form_gradients(forward, backward, pooled, sigma_derivatives):
    """`(x, σ) -> forward(x, σ)` with the gradients `backward` (in x) and the `keras.ops` σ-derivatives (in σ).

    `forward` returns `(mean, Σ Var_σ)`, or, fused with a pooling,
    `(pooled mean, Σ Var_σ, Σ pooled mean²)`; `backward(x, σ, outputs,
    upstreams)` gives the gradient in x from the forward outputs and their
    upstream gradients. `pooled` maps the elementwise `∂h_σ/∂σ` to the
    layout of the first output (the identity, or the fused kernel's pooling).
    """
    import tensorflow as tf

    @tf.custom_gradient
    def function(x, sigma):
        outputs = forward(x, sigma)

        def gradient(*upstreams):
            # An output nothing uses (the variance, after `mean`) gets a zero upstream gradient.
            gradient_x = backward(x, sigma, outputs, upstreams)
            upstream_mean = upstreams[0]
            if len(outputs) == 3:  # Σ mean² adds 2·mean per unit of its upstream gradient
                upstream_mean += 2.0 * upstreams[2] * outputs[0]
            mean_derivative, variance_derivative = sigma_derivatives(x, sigma)
            gradient_sigma = tf.reduce_sum(upstream_mean * pooled(mean_derivative))
            gradient_sigma += upstreams[1] * tf.reduce_sum(variance_derivative)
            return gradient_x, gradient_sigma

        return outputs, gradient

    return lambda x, sigma: function(tf.convert_to_tensor(x), tf.convert_to_tensor(sigma, tf.float32))


def kernels_available() -> bool:
    """Whether the native kernels serve the current backend and setting.

    On TensorFlow with the setting `True`, or `"auto"` with no GPU visible
    and kernels that compile (else a warning, once). Compiles them first
    where the cache does not hold them.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    setting = config.native_tensorflow_kernels()
    if setting is False or keras.backend.backend() != "tensorflow":
        return False
    if setting == config.AUTO and _gpu_visible():
        return False
    return native_build.loads(setting, _library, _FALLBACK, "set_native_tensorflow_kernels")


@functools.cache
def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _in_portable_trace() -> bool:
    """Whether the current trace must not use the native operations.

    That is a trace compiled with XLA (`jit_compile=True`), which cannot call
    them, and one being saved (`model.export`, `tf.saved_model.save`): a
    SavedModel holding them would load only where this library is loaded
    first. TensorFlow marks both with private helpers; where those have
    moved, every trace counts as portable (the `keras.ops` closed forms run,
    with the same values).
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util
        from tensorflow.python.saved_model import save_context
    except ImportError:
        return True
    return save_context.in_save_context() or control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    )


@functools.cache
def _library():
    """The loaded op library, compiled first where the cache does not hold it.

    A process loads it once: a second library registering the same
    operations would make TensorFlow refuse both.
    """
    import tensorflow as tf

    path = _built_library()
    try:
        return tf.load_op_library(str(path))
    except Exception as error:  # tf raises NotFoundError for a library it cannot load
        raise KernelBuildError(
            f"keras_gsmooth: loading {_WHAT} ({path}) failed: {error}. "
            "Delete the file to compile them again."
        ) from error


def _built_library():
    """The cached library's path, compiling it first where the cache does not hold it."""
    import tensorflow as tf

    return native_build.built_library("smoothed_leaky_relu", _SOURCE, tf.__version__, _build_command, _WHAT)


def _build_command(output) -> list:
    """The compiler call that builds the op library into `output`: compile flags before the source, link flags after."""
    import tensorflow as tf

    return [
        native_build.compiler(),
        *native_build.OWN_FLAGS,
        *tf.sysconfig.get_compile_flags(),
        str(_SOURCE),
        "-o",
        str(output),
        *tf.sysconfig.get_link_flags(),
    ]
