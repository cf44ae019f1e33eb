"""Global settings of keras-gsmooth.

One setting for now: whether the smoothed activations' closed forms run as
fused, compiled kernels on the PyTorch backend. JAX and TensorFlow compile
the train step with XLA, which fuses the closed forms already; PyTorch runs
them eagerly, one pass over memory per operation, unless this is on.

The setting starts from the environment variable
`KERAS_GSMOOTH_FUSED_TORCH_KERNELS` (`1` or `0`, default `0`), in the way
Keras reads `KERAS_BACKEND`.
"""

import os

_ENVIRONMENT_VARIABLE = "KERAS_GSMOOTH_FUSED_TORCH_KERNELS"


def _from_environment() -> bool:
    value = os.environ.get(_ENVIRONMENT_VARIABLE, "0").strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("", "0", "false"):
        return False
    raise ValueError(
        f"keras_gsmooth: the environment variable {_ENVIRONMENT_VARIABLE} must be "
        f"1 (fused PyTorch kernels on) or 0 (off). Received: {value!r}."
    )


_fused_torch_kernels = _from_environment()


def set_fused_torch_kernels(enabled: bool) -> None:
    """Turns the fused PyTorch kernels of the smoothed activations on or off.

    When on, on the PyTorch backend the closed forms of the smoothed relu
    and leaky relu (their mean, the variance penalty and the backward pass)
    run as two kernels compiled with `torch.compile` (TorchInductor), one
    for the forward and one for the backward pass, instead of one eager
    operation per term. On a CPU this makes the smoothed paper CNN's train
    step several times faster (see the docs' benchmarks page). The kernels
    are compiled at the first call (a few seconds; TorchInductor caches
    them on disk for later processes) and need what `torch.compile` needs:
    a C++ compiler on a CPU, Triton on a GPU. The setting is read at every
    call, so it can be changed at any time. JAX and TensorFlow ignore it.

    Args:
        enabled: `True` to compile the kernels, `False` (the default) for
            eager PyTorch operations.

    Raises:
        TypeError: if `enabled` is not a bool.

    Example:

    ```python
    keras_gsmooth.config.set_fused_torch_kernels(True)
    ```
    """
    global _fused_torch_kernels
    if not isinstance(enabled, bool):
        raise TypeError(
            "keras_gsmooth.config.set_fused_torch_kernels: `enabled` must be True "
            f"or False. Received: enabled={enabled!r}."
        )
    _fused_torch_kernels = enabled


def fused_torch_kernels() -> bool:
    """Whether the smoothed activations use fused, compiled kernels on PyTorch."""
    return _fused_torch_kernels
