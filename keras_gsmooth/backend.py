"""The per-backend code of keras-gsmooth.

`keras.ops` has no gradient operation. The algorithms that need more than
the one gradient of a standard train step (GSmoothSVRG's snapshot gradient
and full-data gradient, the Monte-Carlo estimators) take it from here, and
the smoothed activations their closed-form gradients and fused kernels;
the GSmooth optimizers take the optimizer class Keras uses on the backend.
This module and `native_tensorflow` (the C++ kernels of the smoothed relu
on TensorFlow) are the only ones of the package that import jax,
tensorflow or torch, and they import the one of the active Keras backend
only.
"""

import contextlib
import functools
import types
import warnings

import keras
from keras import tree

from keras_gsmooth import config
from keras_gsmooth import native_tensorflow


def _unsupported(what: str):
    return ValueError(
        f"keras_gsmooth: {what} needs the jax, tensorflow or torch Keras "
        f"backend; the current backend is {keras.backend.backend()!r}. Set "
        "KERAS_BACKEND to one of those."
    )


def value_and_grad(function, values: list, has_aux: bool = False) -> tuple:
    """Evaluates `function(values)` and its gradient with respect to `values`.

    Works eagerly and inside a compiled train step (a JAX trace, a
    `tf.function`, or PyTorch's eager step).

    Args:
        function: A function from a list of tensors to a scalar tensor (or,
            with `has_aux`, to a tuple `(scalar, aux)`), written with
            `keras.ops`.
        values: The list of tensors to differentiate with respect to.
        has_aux: Whether `function` returns `(scalar, aux)`; `aux` is
            returned as is (detached from the autograd graph on PyTorch).

    Returns:
        `(value, gradients)`, or `((value, aux), gradients)` with
        `has_aux`; `gradients` is a list aligned with `values` (zeros where
        `function` does not depend on a tensor).

    Raises:
        ValueError: on a Keras backend other than jax, tensorflow or torch.

    Example:

    ```python
    value, (gradient,) = keras_gsmooth.backend.value_and_grad(
        lambda v: keras.ops.sum(v[0] ** 2), [keras.ops.ones((3,))]
    )
    ```
    """
    backend = keras.backend.backend()
    values = list(values)
    if backend == "jax":
        import jax

        return jax.value_and_grad(function, has_aux=has_aux)(values)
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.convert_to_tensor(value) for value in values]
        with tf.GradientTape() as tape:
            tape.watch(values)
            output = function(values)
        value = output[0] if has_aux else output
        gradients = tape.gradient(value, values)
    elif backend == "torch":
        import torch

        values = [value.detach().requires_grad_(True) for value in values]
        with torch.enable_grad():
            output = function(values)
        value = output[0] if has_aux else output
        gradients = torch.autograd.grad(value, values, allow_unused=True)
        output = tree.map_structure(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, output)
    else:
        raise _unsupported("value_and_grad")
    gradients = [keras.ops.zeros_like(v) if g is None else g for v, g in zip(values, gradients)]
    return output, gradients


def variables_value_and_grad(function, variables: list, has_aux: bool = False) -> tuple:
    """Evaluates `function()` and its gradient with respect to the current values of `variables`.

    The stateful counterpart of `value_and_grad`, for the TensorFlow and
    PyTorch train steps, which read and update the variables themselves:
    `function` calls the model as Keras's own train step does (no
    `StatelessScope`), so it may also update variables, such as the σ
    schedule's step.

    Args:
        function: A function of no arguments returning a scalar tensor
            (or, with `has_aux`, a tuple `(scalar, aux)`).
        variables: The `keras.Variable`s to differentiate with respect to.
        has_aux: Whether `function` returns `(scalar, aux)`; `aux` is
            returned as is.

    Returns:
        As `value_and_grad`: `(value, gradients)` or `((value, aux), gradients)`.

    Raises:
        ValueError: on a backend other than tensorflow or torch (JAX has no
            stateful gradient: use `value_and_grad`).
    """
    backend = keras.backend.backend()
    variables = list(variables)
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            output = function()
        value = output[0] if has_aux else output
        gradients = tape.gradient(value, variables)
    elif backend == "torch":
        import torch

        with torch.enable_grad():
            output = function()
        value = output[0] if has_aux else output
        gradients = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
    else:
        raise ValueError(
            f"keras_gsmooth: a gradient of variables updated in place needs the "
            f"tensorflow or torch Keras backend; the current backend is "
            f"{backend!r}. On JAX use `value_and_grad` with the variables' values."
        )
    gradients = [keras.ops.zeros_like(v) if g is None else g for v, g in zip(variables, gradients)]
    return output, gradients


def optimizer_class(keras_class: type) -> type:
    """The class Keras itself instantiates for `keras_class` on the current backend.

    On PyTorch, constructing `keras.optimizers.SGD` or `Adam` gives a
    multi-tensor subclass (one `torch._foreach` update for all variables);
    a subclass of the public class does not get that swap and would update
    the variables one by one, which costs about 20 % of a batch-1 step of the
    paper CNN. The GSmooth optimizers therefore extend the class Keras would
    use. Other backends, and Keras versions without these modules, use the
    public class; the updates are the same either way.
    """
    if keras.backend.backend() != "torch":
        return keras_class
    try:
        from keras.src.backend.torch.optimizers import torch_adam
        from keras.src.backend.torch.optimizers import torch_sgd
    except ImportError:  # a Keras version that moved them: the public class is correct, only slower
        return keras_class
    return {keras.optimizers.SGD: torch_sgd.SGD, keras.optimizers.Adam: torch_adam.Adam}.get(keras_class, keras_class)


def variance_reduced_direction(gradients: list, snapshot_gradients: list, full_gradient: list) -> list:
    """GSmoothSVRG's inner direction `g − g̃ + μ`, variable by variable.

    On PyTorch, two multi-tensor operations (`torch._foreach_*`, as Keras's
    own PyTorch optimizers use) update `gradients` in place: they are fresh
    results of `value_and_grad`, owned by the caller. One eager operation
    per variable and term made a GSmoothSVRG step of the paper CNN at batch
    1 cost 2.07× an SGD step, against 2.03× this way. XLA fuses the
    `keras.ops` form on JAX and TensorFlow.
    """
    if keras.backend.backend() == "torch":
        import torch

        direction = list(gradients)
        torch._foreach_sub_(direction, list(snapshot_gradients))
        torch._foreach_add_(direction, list(full_gradient))
        return direction
    return [g - s + mu for g, s, mu in zip(gradients, snapshot_gradients, full_gradient)]


def variable_update_scope():
    """A context in which optimizers may update variables in place.

    PyTorch forbids in-place updates of tensors that require gradients
    outside `torch.no_grad()`; the other backends need no scope.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def is_torch_tensor(x) -> bool:
    """Whether the backend is PyTorch and `x` a torch tensor (not a symbolic `keras.KerasTensor`)."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return isinstance(x, torch.Tensor)


def compile_function(function):
    """Compiles a pure function of tensors for repeated eager calls.

    `jax.jit` on JAX, `tf.function` on TensorFlow; PyTorch runs it eagerly.
    Used for the full-data gradient of GSmoothSVRG's snapshot, which is
    evaluated batch after batch outside `fit`.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if backend == "torch":
        return function
    raise _unsupported("compile_function")


def closed_form_gradient(forward, backward, rematerialize: bool = False, elementwise: bool = False):
    """A function whose gradient is given in closed form.

    Args:
        forward: `forward(*args) -> (outputs, residuals)`: the outputs (a
            tensor or a tuple of tensors) and a tuple of tensors the
            gradient needs.
        backward: `backward(args, residuals, upstream, wanted) -> gradients`:
            one gradient per argument of `forward`, given the arguments, the
            residuals, the upstream gradient (structured like `outputs`) and
            a tuple of booleans, one per argument, saying which gradients
            are needed. Unneeded gradients may be `None`.
        rematerialize: Keep only the arguments and call `forward` again in
            the backward pass, instead of keeping the residuals. XLA's CPU
            backend then fuses the recomputed elementwise chain into the one
            loop that consumes the gradient, and the forward loop writes the
            outputs only, which beats writing residual tensors to memory and
            reading them back (the outputs of the second call are dead
            code). On TensorFlow the second call starts from flattened
            arguments, so that every residual must be elementwise in the
            first argument. PyTorch keeps the residuals, and so does every
            backend when the first argument has a static size under
            `REMATERIALIZE_MIN_ELEMENTS`: a small tensor's residuals stay in
            cache, and recomputing the chain costs more than reading them.
        elementwise: Whether every tensor output of `forward` is
            elementwise in the tensor arguments, or a sum over all their
            elements. On PyTorch such a function can run as two compiled
            kernels (`keras_gsmooth.config.set_fused_torch_kernels`) on the arguments
            flattened in their memory order (a view, not a copy, of a
            permuted tensor such as a convolution's output), and its
            backward kernel recomputes the residuals.

    Returns:
        A function of the same arguments as `forward` returning its outputs.

    PyTorch keeps the residuals (or, with fused kernels, the arguments) in a
    `torch.autograd.Function` that computes only the gradients autograd asks
    for; TensorFlow keeps them in its gradient closure. On JAX kept residuals
    pass an optimization barrier: otherwise XLA fuses their computation into
    each consumer, and when the consumer is the transposed read of a
    convolution's weight gradient it re-derives them there from several
    strided inputs.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.custom_vjp
        def function(*args):
            return forward(*args)[0]

        def function_forward(*args):
            if _rematerializes(rematerialize, args[0]):
                return forward(*args)[0], jax.lax.optimization_barrier((args, None))
            outputs, residuals = forward(*args)
            return jax.lax.optimization_barrier((outputs, (args, residuals)))

        def function_backward(saved, upstream):
            args, residuals = saved
            if residuals is None:
                residuals = forward(*args)[1]
            gradients = backward(args, residuals, upstream, (True,) * len(args))
            return tuple(keras.ops.zeros_like(a) if g is None else g for a, g in zip(args, gradients))

        function.defvjp(function_forward, function_backward)
        return function
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.custom_gradient
        def function(*args):
            outputs, residuals = forward(*args)

            def gradient(*upstream):
                if not isinstance(outputs, (tuple, list)):
                    (upstream,) = upstream
                kept = _tf_recomputed_residuals(forward, args) if _rematerializes(rematerialize, args[0]) else residuals
                return tuple(backward(args, kept, upstream, (True,) * len(args)))

            return outputs, gradient

        return lambda *args: function(*(tf.convert_to_tensor(a) for a in args))
    if backend == "torch":
        return _torch_closed_form_gradient(forward, backward, elementwise)
    raise _unsupported("closed_form_gradient")


# The size from which `closed_form_gradient(..., rematerialize=True)` recomputes
# its residuals: the smoothed relu's summed variance of the paper CNN at
# batch 1 (20,000 values) kept them, and its JAX train step took 1.13–1.16×
# the plain one against 1.24–1.28× recomputing them; at batch 128 (2.56 M
# values) recomputing is what keeps the step at 1.0× (1.7× keeping them).
REMATERIALIZE_MIN_ELEMENTS = 32768


def _rematerializes(rematerialize: bool, x) -> bool:
    """Whether a closed form asked to `rematerialize` does so for first argument `x`.

    A size that is not static (a TensorFlow batch axis of None) counts as large.
    """
    if not rematerialize:
        return False
    size = 1
    for dimension in x.shape:
        if dimension is None:
            return True
        size *= dimension
    return size >= REMATERIALIZE_MIN_ELEMENTS


def _tf_recomputed_residuals(forward, args):
    """The residuals of `forward`, recomputed from flattened copies of `args`.

    XLA would merge a recomputation from the arguments themselves with the
    forward pass's (common-subexpression elimination) and write the shared
    values to memory; from a reshaped argument it is another computation,
    which fuses into the loop that consumes the gradient. Every residual is
    elementwise in the first argument.
    """
    import tensorflow as tf

    flat = [tf.reshape(a, (-1,)) if a.shape.rank else a for a in args]
    shape = tf.shape(args[0])
    return tuple(tf.reshape(r, shape) for r in forward(*flat)[1])


def _torch_closed_form_gradient(forward, backward, elementwise):
    import torch

    kernels = _FusedTorchKernels(forward, backward) if elementwise else None

    class ClosedFormGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            ctx.num_args = len(args)
            ctx.fused = kernels is not None and uses_fused_torch_kernels(args[0])
            if ctx.fused:
                outputs, residuals = kernels.outputs(args), ()
            else:
                outputs, residuals = forward(*args)
            ctx.save_for_backward(*args, *residuals)
            ctx.single_output = not isinstance(outputs, (tuple, list))
            return outputs

        @staticmethod
        def backward(ctx, *upstream):
            saved = ctx.saved_tensors
            args, residuals = saved[: ctx.num_args], saved[ctx.num_args :]
            if ctx.single_output:
                (upstream,) = upstream
            if ctx.fused:
                return kernels.gradients(args, upstream, ctx.needs_input_grad)
            return tuple(backward(args, residuals, upstream, ctx.needs_input_grad))

    def function(*args):
        return ClosedFormGradient.apply(*(torch.as_tensor(a) for a in args))

    return function


def uses_fused_torch_kernels(x) -> bool:
    """Whether an elementwise closed form of `x` runs as fused kernels (`keras_gsmooth.config`)."""
    setting = config.fused_torch_kernels()
    if setting != config.AUTO:
        return setting
    return x.device.type == "cpu" and x.numel() >= config.AUTO_MIN_ELEMENTS and _cpp_compiler_found()


@functools.cache
def _cpp_compiler_found() -> bool:
    """Whether TorchInductor finds a C++ compiler; warns once if not."""
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as error:
        warnings.warn(
            "keras_gsmooth: TorchInductor finds no C++ compiler "
            f"({type(error).__name__}: {' '.join(str(error).split())[:200]}), so the "
            "smoothed activations run as eager PyTorch operations, 2–3× slower "
            "than fused kernels on large tensors. Install a C++ compiler (g++ or "
            "clang++), or choose the eager operations with "
            "keras_gsmooth.config.set_fused_torch_kernels(False) to silence this warning.",
            stacklevel=2,
        )
        return False
    return True


class _FusedTorchKernels:
    """An elementwise closed form and its gradient as two `torch.compile` kernels.

    Every tensor output of `forward` is elementwise in the tensor arguments
    or a sum over all elements, so the kernels work on flattened arguments:
    one compiled kernel, with dynamic sizes, serves every shape. Arguments
    are flattened in the memory order of the first one (`_memory_order`):
    Keras's channels-last convolution output on PyTorch is a permuted view,
    which `reshape(-1)` would copy (1.37× against 1.29× the plain paper
    CNN step). The backward kernel recomputes the residuals from the
    arguments, inside the loop that consumes them, instead of reading them
    from memory.
    Kernels are compiled at their first call
    (`keras_gsmooth.config.set_fused_torch_kernels`).
    """

    def __init__(self, forward, backward):
        self._forward = forward
        self._backward = backward
        self._compiled = None

    def _kernels(self):
        if self._compiled is None:
            import torch

            def outputs(*args):
                return self._forward(*args)[0]

            def gradients(args, upstream, wanted):
                return tuple(self._backward(args, self._forward(*args)[1], upstream, wanted))

            self._compiled = (
                torch.compile(_with_own_code(outputs), dynamic=True, fullgraph=True),
                torch.compile(_with_own_code(gradients), dynamic=True, fullgraph=True),
            )
        return self._compiled

    def outputs(self, args):
        order = _memory_order(args[0])
        outputs = _run_compiled(self._kernels()[0], *_flattened(args, order))
        if isinstance(outputs, (tuple, list)):
            return tuple(_shaped_like(output, args[0], order) for output in outputs)
        return _shaped_like(outputs, args[0], order)

    def gradients(self, args, upstream, wanted):
        order = _memory_order(args[0])
        if isinstance(upstream, (tuple, list)):
            upstream = _flattened(upstream, order)
        else:
            (upstream,) = _flattened((upstream,), order)
        gradients = _run_compiled(self._kernels()[1], _flattened(args, order), upstream, tuple(wanted))
        return tuple(None if g is None else _shaped_like(g, a, order) for g, a in zip(gradients, args))


def _with_own_code(function):
    """A copy of `function` with a code object of its own.

    TorchDynamo keeps its compiled variants, and its limit on their number
    (8), per code object. The kernel wrappers of every closed form share
    one code object, so without a copy the mean, the variance and the
    summed variance, for each slope and dtype, would all count against one
    limit, and compiling would fail once the limit is reached.
    """
    code = function.__code__.replace(co_name=f"{function.__name__}_{id(function):x}")
    return types.FunctionType(code, function.__globals__, code.co_name, function.__defaults__, function.__closure__)


def _memory_order(tensor) -> list:
    """The axes of `tensor` from the largest stride to the smallest."""
    return sorted(range(tensor.ndim), key=lambda axis: -tensor.stride(axis))


def _flattened(tensors, order):
    """Each tensor permuted to `order` and flattened (a view where that order is its memory order)."""
    return tuple(t.permute(order).reshape(-1) if t.ndim > 0 else t for t in tensors)


def _shaped_like(output, like, order):
    """The inverse of `_flattened` for a kernel output: `like`'s shape, in `order`'s memory layout."""
    if output.ndim == 0:
        return output
    shape = [like.shape[axis] for axis in order]
    inverse = sorted(range(len(order)), key=lambda k: order[k])
    return output.view(shape).permute(inverse)


def _run_compiled(kernel, *args):
    try:
        return kernel(*args)
    except Exception as error:
        if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        summary = " ".join(str(error).split())
        raise RuntimeError(
            "keras_gsmooth: compiling the fused PyTorch kernels of a smoothed "
            f"activation with torch.compile failed ({type(error).__name__}: "
            f"{summary[:300]}{'…' if len(summary) > 300 else ''}). They need what "
            "torch.compile needs (a working C++ compiler on a CPU, Triton on a "
            "GPU). Install it, or use the eager kernels: "
            "keras_gsmooth.config.set_fused_torch_kernels(False)."
        ) from error


def separate_fusion(x):
    """`x` as rows `(−1, last axis)` on JAX and TensorFlow, where XLA treats it as another tensor; `x` on PyTorch.

    Two elementwise chains that start from the same tensor share their
    intermediates after XLA's common-subexpression elimination, and XLA's
    CPU backend, which fuses no multi-output loops, then writes every shared
    intermediate to memory. Starting the second chain from this reshaped
    view keeps the chains apart, each one loop (an optimization barrier on
    `x` did not, in the optimized HLO of the paper CNN's train step; on
    TensorFlow the smoothed step went from 1.9× to 1.6× the plain one). On
    PyTorch it returns `x` itself, so that eager kernels share
    intermediates when `separate_fusion(x) is x`.
    """
    if keras.backend.backend() in ("jax", "tensorflow"):
        columns = x.shape[-1] if x.shape and x.shape[-1] is not None else 1
        return keras.ops.reshape(x, (-1, columns))
    return x


def computed_after(value, dependency):
    """`value`, made to depend on `dependency` on JAX; `value` itself elsewhere.

    XLA's CPU scheduler may interleave two independent computations, so
    that the temporaries of both are live at once: GSmoothSVRG's two
    gradients of the paper CNN at batch 128 needed 59 MB of temporaries
    together, one after the other 41 MB (a step 49 → 42 ms). An
    optimization barrier does not order them (XLA's CPU pipeline removes
    barriers before it schedules), so every leaf of `value` gets `0 ×` one
    element of `dependency` added: a data dependence that XLA keeps (a
    float product with zero is not folded, since it is NaN for an infinite
    or NaN operand, which would then reach `value`; the results it orders
    are not finite either in that case). `value` and `dependency` may be
    nested structures of tensors. TensorFlow and PyTorch get `value`
    itself: PyTorch runs in program order, and on TensorFlow GSmoothSVRG's
    step measured 1.7× an SGD step without it.
    """
    if keras.backend.backend() != "jax":
        return value
    first = tree.flatten(dependency)[0]
    anchor = 0.0 * keras.ops.reshape(first, (-1,))[0]
    return tree.map_structure(lambda leaf: leaf + keras.ops.cast(anchor, leaf.dtype), value)


def smoothed_jit_compile(
    jit_compile: bool | str = "auto", run_eagerly: bool = False, fast_without_xla: bool = False
) -> bool | str:
    """The `jit_compile` setting a smoothed model compiles with.

    On TensorFlow `"auto"` becomes `False` when every part of the model is
    fast without XLA and the native kernels of the smoothed relu are
    available (`keras_gsmooth.native_tensorflow`), as Keras compiles the
    plain model on a CPU; otherwise `True`, unless the step runs eagerly:
    the other closed forms are long elementwise expressions that XLA fuses
    (the smoothed paper CNN's step at batch 128 took 30 ms with XLA
    against 64 ms without, on a 2-core CPU, before the native kernels; with
    them and without XLA, about 1.2× the plain step against 1.6–1.8× with
    XLA). Any other setting, and every other backend, is left as given.

    Args:
        jit_compile: The value passed to `compile`.
        run_eagerly: The `run_eagerly` passed to `compile`.
        fast_without_xla: Whether every smoothed part of the model is fast
            without XLA (`SigmaConsumer.fast_without_xla`).

    Returns:
        The value to pass on to `keras.Model.compile`.
    """
    if keras.backend.backend() == "tensorflow" and jit_compile == "auto" and not run_eagerly:
        return not (fast_without_xla and native_tensorflow.kernels_available())
    return jit_compile


def sum_of_squares(x):
    """Σ x² over every element of `x`, in one reduction that writes nothing.

    On JAX the dot product of the flattened `x` with itself: it reads `x`
    once, and its gradient fuses into one product. On PyTorch the same dot
    product under a gradient that is one product, `2·g·x`: autograd's own
    gradient of `dot(x, x)` is two products and their sum, three passes
    over the tensor (on the paper CNN's 4608×128 Dense kernel, a penalty's
    gradient took 1.9–2.4 ms this way against 2.9–3.7 ms with autograd's, a
    step of the data path included, 2026-11-27). As a dot product rather
    than a square and a sum (which writes the squares, then reads them
    back), the penalty of that kernel, forward and backward, took 0.75
    against 1.3 ms; in A/B runs of the smoothed paper CNN's train step
    against that form (2-core CPU): PyTorch 31.6 → 30.4 ms at batch 128 and
    7.05 → 6.94 ms at batch 1, JAX 21.0 → 20.2 ms at batch 128. On
    TensorFlow `2·tf.nn.l2_loss(x)`, one operation with and without
    XLA: outside XLA a dot product runs as oneDNN's matrix product of a row
    and a column, and the two penalties on the paper CNN's 4608-wide hidden
    layer cost a third of its step at batch 128 (the smoothed step 1.57× →
    1.30× the plain one without XLA).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return 2.0 * tf.nn.l2_loss(x)
    if keras.backend.backend() == "torch":
        return _torch_sum_of_squares().apply(x)
    flat = keras.ops.reshape(x, (-1,))
    return keras.ops.dot(flat, flat)


@functools.cache
def _torch_sum_of_squares():
    """`Σ x²` as a `torch.autograd.Function`: one dot product forward, one product backward."""
    import torch

    class SumOfSquares(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            flat = x.reshape(-1)
            return torch.dot(flat, flat)

        @staticmethod
        def backward(ctx, upstream):
            (x,) = ctx.saved_tensors
            return x * (2.0 * upstream)

    return SumOfSquares


def matmul_and_sum_of_squares(x, kernel) -> tuple:
    """`x @ kernel` and `Σ kernel²`: a Dense layer's product and its kernel penalty's sum.

    On PyTorch, for float32 or float64 tensors of one dtype, one
    `torch.autograd.Function` computes both, and its backward pass adds the
    penalty's gradient `2·g·kernel` into the kernel's gradient as it
    writes it (`torch.mm` and an in-place `addcmul_`). Apart, the penalty's
    gradient is a tensor the kernel's size, and autograd adds the two in a
    third: on the paper CNN's 4608×128 hidden kernel at batch 1 the penalty
    cost 0.55 ms forward and backward that way against 0.05–0.2 ms together
    (micro-benchmarks, 2-core CPU, 2026-11-27), and in one interleaved run
    the smoothed train step took 1.18× the plain one this way against 1.31×
    with the penalties as kernel regularizers (0.76× against 0.79× at batch
    128). Elsewhere the two are `keras.ops.matmul` and `sum_of_squares` of
    the kernel, in float32 at least; XLA fuses them on JAX and TensorFlow.

    Args:
        x: The layer's input, of rank 2 or more.
        kernel: The kernel, of shape `(x.shape[-1], units)`: a tensor, or a
            `keras.Variable` read by its value.

    Returns:
        A tuple `(outputs, total)`: the product, and `Σ kernel²` as a scalar
        of the kernel's dtype, or float32 for a narrower float.
    """
    if isinstance(kernel, keras.Variable):
        kernel = kernel.value
    dtype = keras.backend.standardize_dtype(kernel.dtype)
    wide = dtype in ("float32", "float64")
    if wide and is_torch_tensor(kernel) and is_torch_tensor(x) and x.dtype == kernel.dtype:
        return _torch_matmul_and_sum_of_squares().apply(x, kernel)
    accumulation = dtype if wide else "float32"
    return keras.ops.matmul(x, kernel), sum_of_squares(keras.ops.cast(kernel, accumulation))


@functools.cache
def _torch_matmul_and_sum_of_squares():
    """`(x @ kernel, Σ kernel²)` as a `torch.autograd.Function` whose kernel gradient is written once."""
    import torch

    class MatmulAndSumOfSquares(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, kernel):
            ctx.save_for_backward(x, kernel)
            flat = kernel.reshape(-1)
            return torch.matmul(x, kernel), torch.dot(flat, flat)

        @staticmethod
        def backward(ctx, upstream, upstream_total):
            x, kernel = ctx.saved_tensors
            x_gradient = kernel_gradient = None
            if ctx.needs_input_grad[0]:
                x_gradient = torch.matmul(upstream, kernel.t())
            if ctx.needs_input_grad[1]:
                rows = x.reshape(-1, x.shape[-1])
                kernel_gradient = torch.mm(rows.t(), upstream.reshape(-1, upstream.shape[-1]))
                kernel_gradient.addcmul_(kernel, 2.0 * upstream_total)
            return x_gradient, kernel_gradient

    return MatmulAndSumOfSquares


def pools_by_reduction() -> bool:
    """Whether non-overlapping average pooling is faster as a reshape and a mean: on JAX.

    JAX lowers Keras's average pooling to a `reduce_window`, which XLA's CPU
    backend runs as a separate operation: before it, the smoothed
    activation's Gaussian factor and Φ were written to memory besides its
    output, and the pooling's gradient is another windowed operation. With a
    mean over the axes of a reshape, the activation is one loop whose output
    the reduction reads, and the gradient is a broadcast that fuses into the
    activation's backward loop. The smoothed paper CNN's train step at batch
    128 took 16.8 ms this way against 27.7 ms (the plain CNN: 12.4 ms; 10.8
    ms with the same pooling). TensorFlow's XLA step measured slower this
    way (18.8 against 15.9 ms), and PyTorch's eager one too (38.2 against
    36.0 ms): TensorFlow keeps Keras's pooling, and PyTorch pools by
    `native_average_pool`.
    """
    return keras.backend.backend() == "jax"


def native_average_pool(inputs, pool_size: tuple, strides: tuple, data_format: str):
    """'valid' average pooling by the backend's own operation where Keras's costs copies, else None.

    Keras's PyTorch pooling makes a contiguous channels-first copy of a
    channels-last input and pools that, and autograd copies the gradient
    back. PyTorch's pooling takes the channels-last layout as it is (a
    permuted view): forward and backward of the smoothed paper CNN's
    (128, 25, 25, 32) pooling took 7.5 ms this way against 27.6 ms through
    Keras. Other backends, and PyTorch tensors of other ranks, get None.

    Args:
        inputs: `(batch, *spatial, channels)` for `"channels_last"` or
            `(batch, channels, *spatial)` for `"channels_first"`, one to
            three spatial axes.
        pool_size: The window along each spatial axis.
        strides: The stride along each spatial axis.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        The pooled tensor, in the layout of `inputs`, or None where Keras's
        pooling is to be used.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch

    spatial = inputs.ndim - 2
    pool = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d, 3: torch.nn.functional.avg_pool3d}.get(spatial)
    if pool is None:
        return None
    if data_format == "channels_first":
        return pool(inputs, tuple(pool_size), tuple(strides))
    to_first = (0, spatial + 1, *range(1, spatial + 1))
    to_last = (0, *range(2, spatial + 2), 1)
    return pool(inputs.permute(to_first), tuple(pool_size), tuple(strides)).permute(to_last)


def native_erfc():
    """The backend's own `erfc` where that is the fast choice, else None.

    PyTorch runs eagerly, and `torch.erfc` is one vectorised kernel. JAX
    and TensorFlow (with XLA) fuse elementwise chains into one loop, where
    XLA's `erfc` expansion costs more than the fitted form the activations
    use, so they get None.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch

    if torch.compiler.is_compiling():
        # Inside a fused kernel (`_FusedTorchKernels`) the fitted form
        # vectorises; TorchInductor's erfc does not.
        return None
    return torch.erfc
