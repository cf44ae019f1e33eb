"""Native TensorFlow CPU kernels of the smoothed relu, compiled from C++ at first use.

On a CPU, Keras trains a TensorFlow model without XLA, where a convolution
and its relu run as one oneDNN operation. The smoothed relu written with
`keras.ops` is a chain of a few dozen elementwise operations: without XLA
each is a pass over memory, and with XLA (which fuses them) the rest of the
step runs slower than oneDNN's. `kernels/smoothed_leaky_relu.cc` evaluates
the same closed forms in one vectorised, multi-threaded loop per pass: the
forward pass gives `h_σ` and `Σ Var_σ`, the backward pass recomputes Φ and p
from the input instead of reading them from memory.

The source is compiled into a TensorFlow op library with the C++ compiler
`$CXX` (default `g++`) and TensorFlow's own headers and flags
(`tf.sysconfig`), once per source, TensorFlow version and flags: the library
is cached in `$KERAS_GSMOOTH_CACHE` (default `~/.cache/keras_gsmooth`, or
`$XDG_CACHE_HOME/keras_gsmooth`). `keras_gsmooth.config.set_native_tensorflow_kernels`
switches the kernels on, off or to `"auto"`.
"""

import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import warnings

import keras

from keras_gsmooth import config

_SOURCE = pathlib.Path(__file__).parent / "kernels" / "smoothed_leaky_relu.cc"
_OWN_FLAGS = ("-O3", "-fPIC", "-shared", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-w")


class KernelBuildError(RuntimeError):
    """The native TensorFlow kernels could not be compiled or loaded."""


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
    if not kernels_available():
        return None
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32 or _in_portable_trace():
        return None
    library = _library()
    sigma = tf.convert_to_tensor(sigma, tf.float32)

    @tf.custom_gradient
    def function(x, sigma):
        mean, summed = library.keras_gsmooth_smoothed_leaky_relu(x, sigma, alpha=alpha)

        def gradient(upstream_mean, upstream_summed):
            # An output nothing uses (the variance, after `mean`) gets a zero upstream gradient.
            gradient_x = library.keras_gsmooth_smoothed_leaky_relu_grad(
                x, sigma, upstream_mean, upstream_summed, alpha=alpha
            )
            mean_derivative, variance_derivative = sigma_derivatives(x, sigma)
            gradient_sigma = tf.reduce_sum(upstream_mean * mean_derivative)
            gradient_sigma += upstream_summed * tf.reduce_sum(variance_derivative)
            return gradient_x, gradient_sigma

        return (mean, summed), gradient

    return function(x, sigma)


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
    if setting is True:
        _library()
        return True
    return not _gpu_visible() and _library_or_warning() is not None


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


def _library_or_warning():
    """The op library, or None after a warning (once) that it does not compile."""
    try:
        return _library()
    except KernelBuildError as error:
        _warn_once(str(error))
        return None


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(
        f"{message} The smoothed relu runs as keras.ops operations, compiled with XLA, "
        "which is slower on a CPU. Choose them with "
        "keras_gsmooth.config.set_native_tensorflow_kernels(False) to silence this warning.",
        stacklevel=3,
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
            f"keras_gsmooth: loading the native TensorFlow kernels ({path}) failed: {error}. "
            "Delete the file to compile them again."
        ) from error


def _built_library() -> pathlib.Path:
    """The cached library's path, compiling it first where the cache does not hold it."""
    import tensorflow as tf

    flags = _build_command("OUTPUT")
    key = hashlib.sha256("\0".join([_SOURCE.read_text(), tf.__version__, *flags]).encode()).hexdigest()[:16]
    path = _cache_directory() / f"smoothed_leaky_relu-{key}.so"
    if not path.exists():
        _compile(path)
    return path


def _build_command(output) -> list:
    """The compiler call that builds the op library into `output`: compile flags before the source, link flags after."""
    import tensorflow as tf

    compiler = os.environ.get("CXX", "g++")
    return [
        compiler,
        *_OWN_FLAGS,
        *tf.sysconfig.get_compile_flags(),
        str(_SOURCE),
        "-o",
        str(output),
        *tf.sysconfig.get_link_flags(),
    ]


def _cache_directory() -> pathlib.Path:
    root = os.environ.get("KERAS_GSMOOTH_CACHE")
    if root is None:
        root = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "keras_gsmooth"
    return pathlib.Path(root)


def _compile(path: pathlib.Path) -> None:
    """Compiles the kernels into `path`, through a temporary file so that concurrent processes never load half a file."""
    compiler = _build_command(path)[0]
    if shutil.which(compiler) is None:
        raise KernelBuildError(
            f"keras_gsmooth: the native TensorFlow kernels need a C++ compiler, and "
            f"{compiler!r} (from $CXX, default g++) was not found. Install g++ or set CXX."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        built = pathlib.Path(scratch) / path.name
        result = subprocess.run(_build_command(built), capture_output=True, text=True)
        if result.returncode != 0:
            summary = " ".join(result.stderr.split())
            raise KernelBuildError(
                f"keras_gsmooth: compiling the native TensorFlow kernels with {compiler} failed "
                f"(exit status {result.returncode}): {summary[-400:]}"
            )
        os.replace(built, path)
