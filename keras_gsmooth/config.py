"""Global settings of keras-gsmooth.

One setting for now: whether the smoothed activations' closed forms run as
fused, compiled kernels on the PyTorch backend. JAX and TensorFlow compile
the train step with XLA, which fuses the closed forms already; PyTorch runs
them eagerly, one pass over memory per operation, unless fused kernels are
used.

The setting starts from the environment variable
`KERAS_GSMOOTH_FUSED_TORCH_KERNELS` (`auto`, `1` or `0`; default `auto`), in
the way Keras reads `KERAS_BACKEND`.
"""

import os

AUTO = "auto"

# In "auto", the smallest tensor that gets the fused kernels: below it the
# call overhead of a compiled kernel outweighs its gain (a 16,384-element
# relu took 0.49 ms fused against 0.56 ms eager, forward and backward, and
# 65,536 elements 0.69 against 0.92 ms, on a 2-core CPU).
AUTO_MIN_ELEMENTS = 32768

_ENVIRONMENT_VARIABLE = "KERAS_GSMOOTH_FUSED_TORCH_KERNELS"


def _from_environment():
    value = os.environ.get(_ENVIRONMENT_VARIABLE, AUTO).strip().lower()
    if value in ("", AUTO):
        return AUTO
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(
        f"keras_gsmooth: the environment variable {_ENVIRONMENT_VARIABLE} must be "
        f"'auto' (the default), 1 (fused PyTorch kernels on) or 0 (off). Received: {value!r}."
    )


_fused_torch_kernels = _from_environment()


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
    if not (isinstance(enabled, bool) or enabled == AUTO):
        raise ValueError(
            "keras_gsmooth.config.set_fused_torch_kernels: `enabled` must be True, "
            f"False or 'auto'. Received: enabled={enabled!r}."
        )
    _fused_torch_kernels = enabled


def fused_torch_kernels() -> bool | str:
    """The fused-kernel setting of the smoothed activations on PyTorch: `True`, `False` or `"auto"`."""
    return _fused_torch_kernels
