"""The train-step candidates that the benchmarks compare, built alike.

A candidate is the paper CNN (SPEC §3) compiled with SGD(1e-3) and MSE, in
one of these forms: `plain`; `explicit`, its closed-form smoothed
counterpart (every penalty on, λ = 1e-5, σ = 0.1), both from
`train_step.compiled_pair`, with the package's default kernels; on
PyTorch also `explicit-eager`, the same smoothed model stepped with
`keras_gsmooth.config.set_fused_torch_kernels(False)` and
`set_native_torch_kernels(False)` (no compiled kernels);
two references, which show what the backend charges for any change of the
plain network: on TensorFlow `plain-xla`, the plain network compiled with
XLA as a `SmoothedModel` with activations other than relu is, and `silu`,
the plain network with silu in place of relu, compiled as a `SmoothedModel`
with silu is; or a `MonteCarloModel`
around a copy of the plain network with the same weights (σ = 0.1, K
directions, first or zero order). The cost and the memory benchmarks both
build their candidates here, so they measure the same steps.
"""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from train_step import compiled_pair  # noqa: E402
from train_step import step_function  # noqa: E402

import keras_gsmooth  # noqa: E402
from keras_gsmooth import backend  # noqa: E402
from keras_gsmooth import config  # noqa: E402
from keras_gsmooth import montecarlo  # noqa: E402

SIGMA = 0.1
PLAIN = "plain"
EXPLICIT = "explicit"
EXPLICIT_EAGER = "explicit-eager"
PLAIN_XLA = "plain-xla"
SILU = "silu"
REFERENCES = {PLAIN_XLA: "relu", SILU: "silu"}
MONTECARLO_PREFIX = "mc"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to train the paper CNN.

    Attributes:
        key: A short identifier usable on a command line (`plain`,
            `explicit`, `explicit-eager`, `plain-xla`, `silu`,
            `mc-first_order-16`).
        method: `None` for plain and explicit, else the Monte-Carlo method.
        num_samples: K for Monte Carlo, else `None`.
    """

    key: str
    method: str | None = None
    num_samples: int | None = None

    @property
    def label(self) -> str:
        """The row name used in tables."""
        if self.key == PLAIN:
            return "plain"
        if self.key == EXPLICIT:
            return "explicit (closed form)"
        if self.key == EXPLICIT_EAGER:
            return "explicit, eager torch kernels"
        if self.key == PLAIN_XLA:
            return "reference: plain, XLA"
        if self.key == SILU:
            return "reference: silu for relu"
        order = "first-order" if self.method == "first_order" else "zero-order"
        return f"MC {order}, K={self.num_samples}"

    @classmethod
    def parse(cls, key: str) -> "Candidate":
        """The candidate named by `key` (the inverse of `Candidate.key`).

        Raises:
            ValueError: if `key` names no candidate.
        """
        if key in (PLAIN, EXPLICIT, EXPLICIT_EAGER, *REFERENCES):
            return cls(key)
        parts = key.split("-")
        if (
            len(parts) == 3
            and parts[0] == MONTECARLO_PREFIX
            and parts[1] in ("first_order", "zero_order")
            and parts[2].isdigit()
            and int(parts[2]) >= 1
        ):
            return cls(key, parts[1], int(parts[2]))
        raise ValueError(
            f"benchmarks.candidates: unknown candidate {key!r}. Use 'plain', 'explicit', 'explicit-eager', "
            "'plain-xla', 'silu' or 'mc-<first_order|zero_order>-<K>', e.g. 'mc-first_order-16'."
        )


def candidate_list(montecarlo: tuple) -> list:
    """Plain, explicit (and explicit-eager on torch), the references, then one Monte-Carlo candidate per `(method, K)`.

    `plain-xla` only on TensorFlow: elsewhere it is `plain` (JAX always
    compiles with XLA, PyTorch never).
    """
    backend_name = keras.backend.backend()
    eager = [Candidate(EXPLICIT_EAGER)] if backend_name == "torch" else []
    references = ([Candidate(PLAIN_XLA)] if backend_name == "tensorflow" else []) + [Candidate(SILU)]
    return [Candidate(PLAIN), Candidate(EXPLICIT)] + eager + references + [
        Candidate(f"{MONTECARLO_PREFIX}-{method}-{k}", method, k) for method, k in montecarlo
    ]


def build(candidates: list, seed: int = 0) -> dict:
    """Compiled models for `candidates`, all starting from the same weights.

    Args:
        candidates: A list of `Candidate`.
        seed: Seeds the weights and the Monte-Carlo directions.

    Returns:
        A dict `label -> compiled keras.Model`, in the order of `candidates`.
    """
    plain, explicit = compiled_pair(seed)
    models = {}
    for candidate in candidates:
        if candidate.key == PLAIN:
            models[candidate.label] = plain
        elif candidate.key in (EXPLICIT, EXPLICIT_EAGER):
            # One smoothed model serves both: the kernel setting is read at every call (`candidate_step`).
            models[candidate.label] = explicit
        elif candidate.key in REFERENCES:
            models[candidate.label] = _compiled_as_smoothed(plain, REFERENCES[candidate.key])
        else:
            network = keras_gsmooth.models.paper_cnn()
            network.set_weights(plain.get_weights())
            model = montecarlo.MonteCarloModel(
                network, sigma=SIGMA, num_samples=candidate.num_samples, method=candidate.method, seed=seed
            )
            model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
            models[candidate.label] = model
    return models


def _compiled_as_smoothed(plain, activation: str):
    """A copy of `plain` with `activation` for relu and its weights, compiled as `SmoothedModel.compile` compiles a model with closed forms that need XLA.

    That is with `keras_gsmooth.backend.smoothed_jit_compile()`: XLA on
    TensorFlow, Keras's default elsewhere. (A smoothed model whose
    activations are all relu trains without XLA on TensorFlow, with native
    kernels.)
    """

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Activation):
            config["activation"] = activation
        return layer.__class__.from_config(config)

    model = keras.models.clone_model(plain, clone_function=clone)
    model.set_weights(plain.get_weights())
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse", jit_compile=backend.smoothed_jit_compile())
    return model


def candidate_step(candidate: Candidate, model, batch: int):
    """One train step of `model` on a fixed random batch, with the candidate's kernel setting.

    Every candidate's step sets `keras_gsmooth.config.set_fused_torch_kernels`
    and `set_native_torch_kernels` itself, so that interleaved candidates do
    not inherit each other's.
    """
    step = step_function(model, batch)
    setting = False if candidate.key == EXPLICIT_EAGER else config.AUTO

    def run():
        config.set_fused_torch_kernels(setting)
        config.set_native_torch_kernels(setting)
        return step()

    return run
