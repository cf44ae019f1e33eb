"""`smooth_model()`: rewrite a Keras model into its Gaussian-smoothed counterpart."""

import collections
import numbers
from typing import Callable
from typing import Mapping
from typing import Union

import keras
from keras import tree

from keras_gsmooth import layers
from keras_gsmooth import operations
from keras_gsmooth import regularizers
from keras_gsmooth import rules
from keras_gsmooth.layers import InputPenalty
from keras_gsmooth.sigma import SmoothedModel
from keras_gsmooth.validation import check_regularization
from keras_gsmooth.validation import check_sigma

Regularization = Union[float, Mapping[str, float], Callable[[keras.layers.Layer], float]]


def smooth_model(
    model: keras.Model,
    sigma=0.0,
    regularization: Regularization = 0.0,
    replace_max_pooling: bool = False,
    name: str = None,
) -> SmoothedModel:
    """Returns the Gaussian-smoothed counterpart of a Keras model.

    Every layer is rewritten by its rule (`keras_gsmooth.rules`, SPEC §3):
    activations h become their smoothed h_σ (fused activations are split
    off their Dense/Conv layer first), Dropout becomes an identity, and the
    penalty terms of the paper's layer-wise derivation are attached as Keras
    regularizers, so they reach the training loss through `model.losses`
    like any other regularizer:

    - Dense with `units` d₊: λ·(σ²/2)‖θ‖² on the kernel, λ·(σ²d₊/2)‖x‖² on
      its input x;
    - Conv1D/2D/3D, depthwise and transposed convolutions: the same two
      terms with per-tap and per-position counts (a separable convolution:
      those of its depthwise half and of its 1×1 half);
    - an activation h: `λ·Σ Var_σ[h](x) = λ·Σ[(h²)_σ(x) − h_σ(x)²]` on its
      input; a PReLU the variance with its slope perturbed too;
    - Multiply: `λ·Σ[Π(a_j² + σ²/2) − Π a_j²]` over its perturbed factors;
    - Dropout(p): λ·(p/(1−p))‖x‖².

    Bare `keras.ops` calls in a functional model follow the same
    mathematics (`keras_gsmooth.operations`): linear ones (`a + b`,
    `x * 0.5`, reshapes, slices, means) are kept, Keras's activations are
    smoothed, and the rest is refused.

    A smoothed relu or leaky relu whose output only a non-overlapping,
    'valid', channels-last `AveragePooling1D`/`2D` reads becomes one
    `SmoothActivation` with `pool_size` (named `"<activation>_<pooling>"`),
    the same function, computed on TensorFlow's CPU by one native kernel.
    Where that layer's output reaches a Dense layer alone (directly or
    through Flatten or Reshape), the Dense layer's input penalty becomes the
    fused layer's `output_penalty`, which the same kernel computes.

    Layers that only ever see raw data (the model's inputs, or tensors
    computed from them without any trainable weight, such as a Flatten or an
    adapted Normalization of the input) get no penalty, since smoothing over
    data adds constants only; layers without trainable weights on raw data
    (preprocessing such as Rescaling or Normalization, and layers frozen with
    `trainable = False` when the model is converted) are kept unsmoothed, as
    fixed functions of the data. A non-elementwise
    activation (softmax) is allowed on output layers only and stays
    unsmoothed, as part of the data loss.

    The result is a layer-wise surrogate of the lifted objective (SPEC §3),
    not E[L(θ + σu)] of the composed network.

    Args:
        model: A built Sequential or Functional model (nested models, shared
            layers, several inputs and outputs are supported). It is never
            modified.
        sigma: σ: a float `>= 0`, or a σ schedule
            (`keras_gsmooth.schedules`). Leave it at 0 when the optimizer
            (`GSmoothSGD`, `GSmoothAdam`) carries the schedule.
        regularization: The penalty weight λ: one float for every penalty; a
            mapping from the original layer names to λ (layers not named get
            λ = 0); or a callable `layer -> λ` called with each original
            layer. A fused activation split from a layer shares that layer's
            λ; the paper's Table 6 λ's are per layer. A bare `keras.ops`
            activation (`keras.ops.relu(x)`) is smoothed like an activation
            layer, and the mapping or callable receives the operation (its
            name is the operation's, e.g. `"relu"`).
        replace_max_pooling: Replace MaxPooling layers by average pooling of
            the same geometry (an approximation the user opts in to; there is
            no closed-form smoothing of a max).
        name: The new model's name, without '.'; defaults to
            `"<model.name>_smoothed"` with any '.' replaced by '_'.

    Returns:
        A `keras_gsmooth.SmoothedModel` with the original's inputs, outputs
        and weights; compile and train it like any Keras model.

    Raises:
        ValueError: listing every layer that cannot be smoothed, with its
            name, class and the reason, and the ways out
            (`keras_gsmooth.register_rule`, `replace_max_pooling=True`); if
            the model is already smoothed; or if σ or λ is invalid.

    Example:

    ```python
    model = keras_gsmooth.models.paper_cnn()
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.1, regularization=1e-5)
    smoothed.compile(optimizer="sgd", loss="mse")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "smooth_model: `model` must be a keras.Model (Sequential or "
            f"Functional). Received: {type(model).__name__}"
        )
    if isinstance(model, SmoothedModel):
        raise ValueError(
            f"smooth_model: model {model.name!r} is already smoothed (a SmoothedModel). "
            "Pass the original model, or change σ with "
            "`keras_gsmooth.set_sigma(model, sigma)`."
        )
    if isinstance(sigma, numbers.Real):
        check_sigma(sigma, owner="smooth_model")
    regularization_of = _regularization_resolver(regularization, model)
    converter = _GraphConverter(regularization_of, replace_max_pooling)
    inputs, outputs = converter.convert_top_level(model)
    default_name = f"{model.name}_smoothed".replace(".", "_")  # e.g. Keras's "mobilenetv2_1.00_224"
    smoothed = SmoothedModel(inputs, outputs, sigma=sigma, name=name or default_name)
    converter.copy_weights()
    return smoothed


def _regularization_resolver(regularization, model) -> Callable[[keras.layers.Layer], float]:
    owner = "smooth_model"
    if isinstance(regularization, numbers.Real) and not isinstance(regularization, bool):
        value = check_regularization(regularization, owner=owner)
        return lambda layer: value
    if isinstance(regularization, Mapping):
        known = {layer.name for layer in _all_layers(model)}
        unknown = sorted(set(regularization) - known)
        if unknown:
            raise ValueError(
                f"smooth_model: `regularization` names layers that are not in "
                f"model {model.name!r}: {unknown}. Known layer names: {sorted(known)}"
            )
        values = {
            layer_name: check_regularization(value, argument=f"regularization[{layer_name!r}]", owner=owner)
            for layer_name, value in regularization.items()
        }
        return lambda layer: values.get(layer.name, 0.0)
    if callable(regularization):
        return lambda layer: check_regularization(
            regularization(layer), argument=f"regularization({layer.name!r})", owner=owner
        )
    raise ValueError(
        "smooth_model: `regularization` must be a float >= 0, a mapping from "
        "layer names to floats, or a callable layer -> float. Received: "
        f"{regularization!r}"
    )


def _all_layers(model):
    return model._flatten_layers(include_self=False)


def _graph_of(model):
    """The functional graph of a Functional or Sequential model."""
    if isinstance(model, keras.Sequential):
        if model._functional is None:
            raise ValueError(
                f"smooth_model: Sequential model {model.name!r} is not built "
                "with a known input shape. Start it with `keras.Input(shape)` "
                "or call `model.build(input_shape)` first."
            )
        return model._functional
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"smooth_model: model {model.name!r} ({type(model).__name__}) is a "
            "subclassed model, whose layer graph is not known. Rebuild it as "
            "a Functional or Sequential model."
        )
    return model


# Layers whose output holds their input's values, rearranged.
_RESHAPES = (keras.layers.Flatten, keras.layers.Reshape)


class _Readers:
    """The calls that read each tensor of one graph; an output of the graph counts as one more reader."""

    def __init__(self, calls, outputs):
        self._calls = collections.defaultdict(list)
        for call in calls:
            for tensor in call.inputs:
                self._calls[id(tensor)].append(call)
        self._outputs = collections.Counter(id(tensor) for tensor in outputs)

    def count(self, tensor) -> int:
        return len(self._calls[id(tensor)]) + self._outputs[id(tensor)]

    def only_call(self, tensor):
        """The one call that reads `tensor`, or None where it has another reader, or none, or is an output."""
        calls = self._calls[id(tensor)]
        return calls[0] if len(calls) == 1 and not self._outputs[id(tensor)] else None


class _Call:
    """One call of a layer in the graph: its input and output tensors."""

    def __init__(self, node):
        self.node = node
        self.inputs = node.input_tensors
        self.outputs = node.outputs


class _GraphConverter:
    """Walks a functional graph and builds the smoothed graph beside it."""

    def __init__(self, regularization_of, replace_max_pooling):
        self._regularization_of = regularization_of
        self._replace_max_pooling = replace_max_pooling
        # id(original layer) -> (original layer, replacement, penalty layer)
        self._replacements = {}
        self._unsupported = []
        self._used_names = set()
        # Nodes of Dense calls whose input penalty a smoothed activation took over.
        self._moved_input_penalties = set()
        # How many times the graph being walked runs per model call: a nested
        # model called k times runs its layers k times each.
        self._graph_calls = 1

    # -- top level -------------------------------------------------------

    def convert_top_level(self, model):
        graph = _graph_of(model)
        self._reserve_names(model)
        new_inputs = [self._new_input(tensor) for tensor in graph.inputs]
        outputs = self._convert_graph(graph, new_inputs, [True] * len(new_inputs), [True] * len(graph.outputs))
        self._raise_if_unsupported(model)
        inputs = tree.pack_sequence_as(graph._inputs_struct, new_inputs)
        return inputs, outputs

    def _reserve_names(self, model):
        for layer in _all_layers(model):
            self._used_names.add(layer.name)

    def _unique_name(self, base):
        candidate, index = base, 1
        while candidate in self._used_names:
            candidate = f"{base}_{index}"
            index += 1
        self._used_names.add(candidate)
        return candidate

    @staticmethod
    def _new_input(tensor):
        layer = tensor._keras_history.operation
        return keras.Input(
            shape=tensor.shape[1:],
            batch_size=tensor.shape[0],
            dtype=tensor.dtype,
            sparse=getattr(tensor, "sparse", False),
            name=layer.name,
        )

    def _raise_if_unsupported(self, model):
        if not self._unsupported:
            return
        lines = "\n".join(
            f"  - {layer_name} ({class_name}): {reason}" for layer_name, class_name, reason in self._unsupported
        )
        raise ValueError(
            f"smooth_model: {len(self._unsupported)} layer(s) or operation(s) of model "
            f"{model.name!r} cannot be smoothed:\n{lines}\n"
            "Ways out: register a rule for the layer class with "
            "`keras_gsmooth.register_rule(LayerClass, rule)`; for max pooling, "
            "pass `replace_max_pooling=True`; or train the original model "
            "with Monte-Carlo smoothing (keras_gsmooth.montecarlo). The model "
            "was not changed."
        )

    # -- graph walking ---------------------------------------------------

    def _convert_graph(self, graph, new_inputs, inputs_raw, outputs_final):
        """Rebuilds `graph` on `new_inputs`; returns its outputs (structured).

        `outputs_final` says, for each of the graph's outputs, whether it is
        an output of the whole model (a nested model's output may feed
        further layers).
        """
        tensors = {}
        raw = {}
        for original, new, is_raw in zip(graph.inputs, new_inputs, inputs_raw):
            tensors[id(original)] = new
            raw[id(original)] = is_raw
        calls = self._calls_in_order(graph)
        output_ids = {id(tensor) for tensor, final in zip(graph.outputs, outputs_final) if final}
        calls_of = collections.defaultdict(list)
        for call in calls:
            calls_of[id(call.node.operation)].append(call)
        readers = _Readers(calls, graph.outputs)
        for call in calls:
            self._convert_call(call, calls_of, tensors, raw, output_ids, readers)
        return tree.pack_sequence_as(graph._outputs_struct, [tensors[id(t)] for t in graph.outputs])

    @staticmethod
    def _calls_in_order(graph):
        calls = []
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if node.operation is not None and not node.is_input:
                    calls.append(_Call(node))
        return calls

    def _convert_call(self, call, calls_of, tensors, raw, output_ids, readers):
        layer = call.node.operation
        all_calls = calls_of[id(layer)]
        call_is_raw = all(raw[id(tensor)] for tensor in call.inputs)
        args, kwargs = call.node.arguments.fill_in(tensors)
        if call_is_raw and not _has_trainable_weights(layer):
            outputs = self._keep_as_preprocessing(layer)(*args, **kwargs)
            outputs_raw = True
        else:
            entry = self._replacement_for(layer, call, all_calls, raw, output_ids)
            fused = self._activation_fused_with(entry, call, args, kwargs, calls_of, readers, raw, output_ids)
            if fused is None:
                self._give_activation_the_next_input_penalty(entry, all_calls, call, calls_of, readers, raw, output_ids)
                penalized = not call_is_raw and id(call.node) not in self._moved_input_penalties
                outputs = self._apply(entry, args, kwargs, penalized)
            else:
                outputs = fused
            outputs_raw = False
        for original, new in zip(call.outputs, tree.flatten(outputs)):
            tensors[id(original)] = new
            raw[id(original)] = outputs_raw

    def _keep_as_preprocessing(self, layer):
        key = ("preprocessing", id(layer))
        if key not in self._replacements:
            self._replacements[key] = (layer, _clone_operation(layer), None)
        return self._replacements[key][1]

    def _replacement_for(self, layer, call, all_calls, raw, output_ids):
        key = id(layer)
        if key in self._replacements:
            return self._replacements[key]
        if isinstance(layer, keras.Model):
            entry = (layer, self._convert_nested(layer, all_calls, raw, output_ids), None)
            self._replacements[key] = entry
            return entry
        context = self._context_for(layer, all_calls, raw, output_ids)
        try:
            if isinstance(layer, keras.layers.Layer):
                replacement = rules.get_rule(layer)(layer, context)
            else:
                perturbed = [not _all_raw(argument, raw) for argument in call.node.arguments.args]
                replacement = operations.operation_rule(layer, perturbed, context)
                if isinstance(replacement.layer, keras.layers.Layer):
                    replacement.layer.name = self._unique_name(replacement.layer.name)
        except rules.UnsupportedLayer as error:
            # Keep walking with a stand-in, so that one error lists every
            # unsupported layer; nothing is returned once any was found.
            self._unsupported.append((layer.name, type(layer).__name__, str(error)))
            replacement = rules.Replacement(_StandIn(layer))
        self._check_replacement(layer, replacement)
        penalty_layer = None
        if replacement.input_penalty is not None:
            penalty_layer = InputPenalty(
                activity_regularizer=replacement.input_penalty,
                name=self._unique_name(f"{layer.name}_input_penalty"),
            )
        if replacement.activation is not None:
            replacement.activation.name = self._unique_name(replacement.activation.name)
        entry = (layer, replacement, penalty_layer)
        self._replacements[key] = entry
        return entry

    def _convert_nested(self, model, all_calls, raw, output_ids):
        """Converts a nested model for all its calls.

        Its inputs count as raw, and its outputs as the whole model's, only
        if so in every call; each of its layers counts as called once per
        call of `model` (a shared layer's penalties count every call).
        """
        graph = _graph_of(model)
        new_inputs = [self._new_input(tensor) for tensor in graph.inputs]
        inputs_raw = [all(raw[id(call.inputs[index])] for call in all_calls) for index in range(len(new_inputs))]
        outputs_final = [all(id(call.outputs[index]) in output_ids for call in all_calls) for index in range(len(graph.outputs))]
        enclosing_calls = self._graph_calls
        self._graph_calls = enclosing_calls * len(all_calls)
        try:
            outputs = self._convert_graph(graph, new_inputs, inputs_raw, outputs_final)
        finally:
            self._graph_calls = enclosing_calls
        if self._unsupported:
            # Stand-ins took some layers' places: the walk goes on to list
            # every unsupported layer, and nothing is built.
            return _NestedModel(_StandIn(model))
        inputs = tree.pack_sequence_as(graph._inputs_struct, new_inputs)
        return _NestedModel(keras.Model(inputs, outputs, name=model.name))

    def _context_for(self, layer, all_calls, raw, output_ids):
        # Which inputs are raw data, call by call.
        raw_patterns = [tuple(raw.get(id(t), False) for t in c.inputs) for c in all_calls] * self._graph_calls
        input_shapes = [tuple(c.inputs[0].shape) for c in all_calls] * self._graph_calls
        return rules.RuleContext(
            regularization=self._regularization_of(layer),
            input_shapes=tuple(input_shapes),
            penalized_input_shapes=tuple(shape for shape, pattern in zip(input_shapes, raw_patterns) if not all(pattern)),
            is_output=all(any(id(t) in output_ids for t in c.outputs) for c in all_calls),
            replace_max_pooling=self._replace_max_pooling,
            inputs_raw=raw_patterns[0] if len(set(raw_patterns)) == 1 else None,
            repeated_input=any(len({id(t) for t in c.inputs}) < len(c.inputs) for c in all_calls),
        )

    @staticmethod
    def _check_replacement(layer, replacement):
        if not isinstance(replacement, rules.Replacement):
            raise TypeError(
                f"smooth_model: the rule for layer {layer.name!r} "
                f"({type(layer).__name__}) returned {replacement!r}; a rule "
                "must return a keras_gsmooth.rules.Replacement."
            )
        if replacement.layer is layer:
            raise ValueError(
                f"smooth_model: the rule for layer {layer.name!r} "
                f"({type(layer).__name__}) returned the original layer; it "
                "must return a new one (use keras_gsmooth.rules.clone_layer), "
                "so that the original model is never changed."
            )

    def _activation_fused_with(self, entry, call, args, kwargs, calls_of, readers, raw, output_ids):
        """The output of the smoothed activation before an average pooling, fused with it, or None.

        A smoothed relu or leaky relu (native TensorFlow kernels) of a layer
        called once, whose output this pooling call alone reads, becomes one
        `SmoothActivation` with `pool_size`: the same function, whose
        TensorFlow kernels never store `h_σ` in full. The pooling must be
        non-overlapping, 'valid', channels last, over 1 or 2 spatial axes
        (where the fused kernel serves). The unfused activation's call is
        left out of the new model, which only holds what its outputs need.
        The fused layer also takes over the input penalty of the Dense layer
        its output feeds (`_input_penalty_taken_from_dense_after`).
        """
        _, replacement, penalty_layer = entry
        pooling = getattr(replacement, "layer", None)
        if (
            not isinstance(pooling, (layers.AveragePooling1D, layers.AveragePooling2D))
            or tuple(pooling.strides) != tuple(pooling.pool_size)
            or pooling.padding != "valid"
            or pooling.data_format != "channels_last"
            or penalty_layer is not None
            or len(args) != 1
            or kwargs
            or readers.count(call.inputs[0]) != 1
            or len(calls_of[id(call.inputs[0]._keras_history.operation)]) != 1
        ):
            return None
        activation, node_index, _ = args[0]._keras_history
        if (
            not isinstance(activation, layers.SmoothActivation)
            or activation.pool_size is not None
            or not activation.activation.native_tensorflow_kernels
        ):
            return None
        config = activation.get_config()
        config.update(
            pool_size=tuple(pooling.pool_size),
            output_penalty=self._input_penalty_taken_from_dense_after(call, calls_of, readers, raw, output_ids),
            name=self._unique_name(f"{activation.name}_{pooling.name}"),
        )
        fused = layers.SmoothActivation.from_config(config)
        return fused(activation._inbound_nodes[node_index].input_tensors[0])

    def _give_activation_the_next_input_penalty(self, entry, all_calls, call, calls_of, readers, raw, output_ids):
        """Moves the input penalty of the Dense layer after a smoothed activation into the activation.

        The activation (a `SmoothActivation` layer, or one split off a
        layer) of a layer called once takes the penalty as its
        `output_penalty` where `_input_penalty_taken_from_dense_after`
        allows. The value is the same; the smoothed model has one layer call
        less, which on eager PyTorch costs about as much as the penalty's
        arithmetic at batch 1 (a Keras layer call and Keras's activity
        regularizer path, with its batch-size conversion).
        """
        _, replacement, _ = entry
        activation = getattr(replacement, "activation", None)
        if activation is None:
            activation = getattr(replacement, "layer", None)
        if (
            not isinstance(activation, layers.SmoothActivation)
            or activation.pool_size is not None
            or activation.output_penalty is not None
            or len(all_calls) != 1
        ):
            return
        activation.output_penalty = self._input_penalty_taken_from_dense_after(call, calls_of, readers, raw, output_ids)

    def _input_penalty_taken_from_dense_after(self, call, calls_of, readers, raw, output_ids):
        """The input penalty of the Dense layer that alone reads `call`'s output, taken from its call, or None.

        The output may reach the Dense layer through Flatten and Reshape
        calls, each tensor on the way read by the next call alone; the Dense
        layer must be called once, and its rule must give it a
        `DenseInputPenalty`, whose `Σ x²` is the same on the reshaped tensor
        as on `call`'s output. Its call then goes without the InputPenalty
        layer.
        """
        reader = readers.only_call(call.outputs[0])
        while reader is not None and type(reader.node.operation) in _RESHAPES:
            reader = readers.only_call(reader.outputs[0])
        if reader is None:
            return None
        dense = reader.node.operation
        if type(dense) is not keras.layers.Dense or len(calls_of[id(dense)]) != 1:
            return None
        _, _, penalty_layer = self._replacement_for(dense, reader, calls_of[id(dense)], raw, output_ids)
        if penalty_layer is None or not isinstance(penalty_layer.activity_regularizer, regularizers.DenseInputPenalty):
            return None
        self._moved_input_penalties.add(id(reader.node))
        return penalty_layer.activity_regularizer

    @staticmethod
    def _apply(entry, args, kwargs, penalized):
        """Calls a replacement on converted arguments, behind its InputPenalty layer where `penalized`."""
        _, replacement, penalty_layer = entry
        if isinstance(replacement, _NestedModel):
            return replacement(*args, **kwargs)
        if penalty_layer is not None and penalized:
            args = (penalty_layer(args[0]),) + tuple(args[1:])
        if "mask" in kwargs and not getattr(replacement.layer, "_call_has_mask_arg", True):
            # A layer whose call takes no mask gets none, as in Keras (an
            # elementwise replacement of TimeDistributed, say); its
            # `compute_mask` passes the input's mask on.
            kwargs = {key: value for key, value in kwargs.items() if key != "mask"}
        outputs = replacement.layer(*args, **kwargs)
        if replacement.activation is not None:
            outputs = replacement.activation(outputs)
        return outputs

    # -- weights ---------------------------------------------------------

    def copy_weights(self):
        """Copies every original layer's weights into its replacement."""
        for original, replacement, _ in self._replacements.values():
            if isinstance(replacement, _NestedModel) or not isinstance(original, keras.layers.Layer):
                continue  # a nested model's layers are entries of their own; a bare operation has no weights
            new_layer = replacement if isinstance(replacement, keras.layers.Layer) else replacement.layer
            if original.weights:
                new_layer.set_weights(original.get_weights())
                # An adapted preprocessing layer (Normalization, ...) derives
                # its state from these variables, as after loading a file.
                finalize_state = getattr(new_layer, "finalize_state", None)
                if callable(finalize_state):
                    finalize_state()


def _has_trainable_weights(operation) -> bool:
    """Whether a graph node's operation has trainable weights (a bare `keras.ops` operation has none)."""
    return isinstance(operation, keras.layers.Layer) and bool(operation.trainable_weights)


def _clone_operation(operation):
    """A new layer or bare `keras.ops` operation of the same class and configuration."""
    if isinstance(operation, keras.layers.Layer):
        return rules.clone_layer(operation)
    return operations.clone_operation(operation)


def _all_raw(argument, raw) -> bool:
    """Whether every tensor in a call argument is raw data (true of a constant)."""
    return all(raw[id(tensor)] for tensor in tree.flatten(argument) if isinstance(tensor, keras.KerasTensor))


class _StandIn:
    """Takes an unsupported layer's or operation's place while the walk goes on.

    Called like the original, it returns the original's output specs
    without cloning it, which may be impossible (a `Lambda` in Keras's safe
    mode, a layer whose configuration does not round-trip), and without
    calling it, which would add a node to the original. The model it is
    part of is never built.
    """

    def __init__(self, original):
        self._output_spec_of_original = original.compute_output_spec

    def __call__(self, *args, **kwargs):
        return self._output_spec_of_original(*args, **kwargs)


class _NestedModel:
    """The replacement of a nested Functional/Sequential model: its converted functional model (a stand-in while unsupported layers are being listed)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)
