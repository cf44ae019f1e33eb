"""Global settings of keras-gsmooth.

Three settings, all about compiled kernels for the smoothed relu and leaky
relu: whether their closed forms run as fused kernels compiled by
TorchInductor on the PyTorch backend (`set_fused_torch_kernels`), as native
C++ kernels on PyTorch's CPU for the tensors those do not take
(`set_native_torch_kernels`), and as native C++ kernels on TensorFlow's CPU
(`set_native_tensorflow_kernels`). JAX compiles the train step with XLA,
which fuses the closed forms already.

Each setting starts from an environment variable,
`KERAS_GSMOOTH_FUSED_TORCH_KERNELS`, `KERAS_GSMOOTH_NATIVE_TORCH_KERNELS` and
`KERAS_GSMOOTH_NATIVE_TENSORFLOW_KERNELS` (`auto`, `1` or `0`; default
`auto`), in the way Keras reads `KERAS_BACKEND`.
"""

import os

AUTO = "auto"

# In "auto", the smallest tensor that gets the fused kernels: below it the
# call overhead of a compiled kernel outweighs its gain (a 16,384-element
# relu took 0.49 ms fused against 0.56 ms eager, forward and backward, and
# 65,536 elements 0.69 against 0.92 ms, on a 2-core CPU).
AUTO_MIN_ELEMENTS = 32768


def _from_environment(variable: str, what: str) -> bool | str:
    value = os.environ.get(variable, AUTO).strip().lower()
    if value in ("", AUTO):
        return AUTO
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(
        f"keras_gsmooth: the environment variable {variable} must be "
        f"'auto' (the default), 1 ({what} on) or 0 (off). Received: {value!r}."
    )


def _checked(setter: str, enabled) -> bool | str:
    if not (isinstance(enabled, bool) or enabled == AUTO):
        raise ValueError(
            f"keras_gsmooth.config.{setter}: `enabled` must be True, False or 'auto'. "
            f"Received: enabled={enabled!r}."
        )
    return enabled


_fused_torch_kernels = _from_environment("KERAS_GSMOOTH_FUSED_TORCH_KERNELS", "fused PyTorch kernels")
_native_torch_kernels = _from_environment("KERAS_GSMOOTH_NATIVE_TORCH_KERNELS", "native PyTorch kernels")
_native_tensorflow_kernels = _from_environment(
    "KERAS_GSMOOTH_NATIVE_TENSORFLOW_KERNELS", "native TensorFlow kernels"
)


def set_fused_torch_kernels(enabled: bool | str = AUTO) -> None:
    """Chooses between fused and eager PyTorch kernels for the smoothed activations.

    With fused kernels, on the PyTorch backend the closed forms of the
    smoothed relu and leaky relu (their mean, the variance penalty and the
    backward pass) run as two kernels compiled with `torch.compile`
    (TorchInductor), one for the forward and one for the backward pass,
    instead of one eager operation per term. On a CPU this makes the
    smoothed paper CNN's train step at batch 128 about twice as fast (see
    the docs' benchmarks page). The kernels are compiled at their first call
    (a few seconds; TorchInductor caches them on disk for later processes)
    and need what `torch.compile` needs: a C++ compiler on a CPU, Triton on
    a GPU. The setting is read at every call, so it can be changed at any
    time. JAX and TensorFlow ignore it.

    Args:
        enabled: `"auto"` (the default): fused kernels for CPU tensors of at
            least `AUTO_MIN_ELEMENTS` (32,768) elements when TorchInductor
            finds a C++ compiler, eager operations otherwise (smaller
            tensors, where a compiled call costs more than it saves, and
            other devices); without a compiler, a warning says so once.
            `True`: fused kernels for every tensor, on every device; a
            failed compilation is an error. `False`: eager operations.

    Raises:
        ValueError: if `enabled` is not `True`, `False` or `"auto"`.

    Example:

    ```python
    keras_gsmooth.config.set_fused_torch_kernels(False)  # eager PyTorch operations
    ```
    """
    global _fused_torch_kernels
    _fused_torch_kernels = _checked("set_fused_torch_kernels", enabled)


def fused_torch_kernels() -> bool | str:
    """The fused-kernel setting of the smoothed activations on PyTorch: `True`, `False` or `"auto"`."""
    return _fused_torch_kernels


def set_native_torch_kernels(enabled: bool | str = AUTO) -> None:
    """Chooses between native C++ kernels and eager operations for the smoothed relu on PyTorch's CPU.

    With native kernels, on the PyTorch backend the smoothed relu and leaky
    relu (`keras_gsmooth.activations.ReLU`: the mean, the summed variance
    penalty and the backward pass) of a float32 CPU tensor that the fused
    kernels do not take (`set_fused_torch_kernels`; in `"auto"`, one of
    fewer than `AUTO_MIN_ELEMENTS` elements) run as two C++ functions, one
    vectorised loop per pass, instead of a few dozen eager operations, each
    of which costs more in dispatch than in arithmetic on a small tensor.
    Fused with the average pooling that follows (`SmoothActivation` with
    `pool_size`) the forward loop also pools, and sums the pooled output's
    squares for its penalty. The smoothed paper CNN's step at batch 1 costs
    about 1.2× the plain one this way, against 1.35× without (see the docs'
    performance guide). The kernels run on one thread, and are compiled from
    the C++ source shipped in the package at their first use (about a
    second; the library is cached in `~/.cache/keras_gsmooth`, or
    `$KERAS_GSMOOTH_CACHE`, for later processes), with the C++ compiler
    `$CXX` (default `g++`). The setting is read at every call. JAX and
    TensorFlow ignore it.

    Args:
        enabled: `"auto"` (the default): native kernels where they apply
            when they compile; where they do not, a warning says so once
            and the closed forms run as eager operations. `True`: the same,
            and a failed compilation is an error. `False`: eager operations.

    Raises:
        ValueError: if `enabled` is not `True`, `False` or `"auto"`.

    Example:

    ```python
    keras_gsmooth.config.set_native_torch_kernels(False)  # eager PyTorch operations
    ```
    """
    global _native_torch_kernels
    _native_torch_kernels = _checked("set_native_torch_kernels", enabled)


def native_torch_kernels() -> bool | str:
    """The native-kernel setting of the smoothed relu on PyTorch: `True`, `False` or `"auto"`."""
    return _native_torch_kernels


def set_native_tensorflow_kernels(enabled: bool | str = AUTO) -> None:
    """Chooses between native C++ kernels and `keras.ops` for the smoothed relu on TensorFlow.

    With native kernels, on the TensorFlow backend the smoothed relu and
    leaky relu (`keras_gsmooth.activations.ReLU`: the mean, the summed
    variance penalty and the backward pass) run as two TensorFlow CPU
    operations written in C++, one vectorised, multi-threaded loop per
    pass, wherever the step is not compiled with XLA. A smoothed model whose
    only smoothed activations are relu and leaky relu then trains without
    XLA (`SmoothedModel.compile` with `jit_compile="auto"`), as Keras trains
    the plain model on a CPU: the smoothed paper CNN's step at batch 128
    costs about 1.2× the plain one this way, against 1.6–1.8× with XLA (see
    the docs' benchmarks page). The kernels are compiled from the C++ source
    shipped in the package at their first use (about 10 s; the library is
    cached in `~/.cache/keras_gsmooth`, or `$KERAS_GSMOOTH_CACHE`, for later
    processes), with the C++ compiler `$CXX` (default `g++`) and
    TensorFlow's headers. The setting is read whenever a step is traced.
    JAX and PyTorch ignore it.

    Args:
        enabled: `"auto"` (the default): native kernels for float32 tensors
            when no GPU is visible and the kernels compile; where they do
            not, a warning says so once and the closed forms run as
            `keras.ops` (compiled with XLA). `True`: native kernels for
            every float32 tensor outside XLA; a failed compilation is an
            error. `False`: `keras.ops` everywhere.

    Raises:
        ValueError: if `enabled` is not `True`, `False` or `"auto"`.

    Example:

    ```python
    keras_gsmooth.config.set_native_tensorflow_kernels(False)  # keras.ops with XLA
    ```
    """
    global _native_tensorflow_kernels
    _native_tensorflow_kernels = _checked("set_native_tensorflow_kernels", enabled)


def native_tensorflow_kernels() -> bool | str:
    """The native-kernel setting of the smoothed relu on TensorFlow: `True`, `False` or `"auto"`."""
    return _native_tensorflow_kernels
