"""σ schedules: values, serialization, bad input, and σ_t = schedule(t) inside `fit` on every backend."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_gsmooth import schedules
from keras_gsmooth.sigma import SigmaConsumer
from keras_gsmooth.sigma import SmoothedModel

STEPS = [0, 1, 7, 99, 100, 101, 250, 999, 5_000]


def _values(schedule, steps=STEPS):
    return np.array([float(ops.convert_to_numpy(schedule(ops.convert_to_tensor(t, "int32")))) for t in steps])


@keras.saving.register_keras_serializable(package="gsmooth_tests")
def _halving(step):
    return 0.5 ** ops.floor(ops.cast(step, "float32") / 100.0)


@pytest.mark.parametrize(
    "schedule, reference",
    [
        (schedules.PiecewiseConstant([100, 200, 300], [1.0, 0.5, 0.25, 0.0]), lambda t: [1.0, 0.5, 0.25, 0.0][sum(t >= b for b in (100, 200, 300))]),
        (schedules.ExponentialDecay(0.8, 100, 0.5), lambda t: 0.8 * 0.5 ** (t / 100)),
        (schedules.ExponentialDecay(0.8, 100, 0.5, floor=0.3), lambda t: max(0.3, 0.8 * 0.5 ** (t / 100))),
        (schedules.ExponentialDecay(0.8, 100, 0.5, staircase=True), lambda t: 0.8 * 0.5 ** (t // 100)),
        (schedules.InverseTimeDecay(0.5, 10), lambda t: 0.5 / (1 + t / 10)),
        (schedules.InverseTimeDecay(0.5, 10, power=0.75), lambda t: 0.5 / (1 + t / 10) ** 0.75),
        (schedules.CosineDecay(1.0, 1000, final_sigma=0.1), lambda t: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1000) / 1000))),
        (schedules.Callable(_halving), lambda t: 0.5 ** (t // 100)),
    ],
    ids=["piecewise", "exponential", "exponential-floor", "staircase", "inverse-time", "inverse-time-0.75", "cosine", "callable"],
)
def test_schedule_values_match_their_formula(schedule, reference):
    np.testing.assert_allclose(_values(schedule), [reference(t) for t in STEPS], rtol=1e-5, atol=1e-7)
    schedules.validate_schedule(schedule, owner="test")


def test_decaying_schedules_are_non_increasing_and_reach_zero():
    steps = list(range(0, 3000, 7))
    for schedule in [
        schedules.PiecewiseConstant([100, 200, 300], [1.0, 0.5, 0.25, 0.0]),
        schedules.ExponentialDecay(1.0, 50, 0.5),
        schedules.CosineDecay(1.0, 2000),
    ]:
        values = _values(schedule, steps)
        assert np.all(np.diff(values) <= 0)
        assert values[-1] < 1e-6
    # Square-summable (Theorem 3.1): partial sums of σ_t² converge for power > 1/2.
    values = _values(schedules.InverseTimeDecay(1.0, 1, power=1.0), [10**k for k in range(7)])
    np.testing.assert_allclose(values * np.array([10.0**k + 1 for k in range(7)]), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.Constant(0.3),
        schedules.PiecewiseConstant([10], [0.5, 0.0]),
        schedules.ExponentialDecay(0.8, 100, 0.5, floor=0.1, staircase=True),
        schedules.InverseTimeDecay(0.5, 10, power=2.0),
        schedules.CosineDecay(1.0, 1000, final_sigma=0.1),
        schedules.Callable(_halving),
    ],
    ids=lambda s: type(s).__name__,
)
def test_schedules_round_trip_through_keras_serialization(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert keras.saving.serialize_keras_object(restored) == config
    np.testing.assert_array_equal(_values(restored), _values(schedule))
    assert schedules.get(config).get_config() == schedule.get_config()
    short = {"class_name": type(schedule).__name__, "config": config["config"]}
    assert schedules.get(short).get_config() == schedule.get_config()


def test_lambda_schedule_loads_only_outside_safe_mode():
    schedule = schedules.get(lambda step: 0.1)  # bytecode: no globals after loading
    assert isinstance(schedule, schedules.Callable)
    config = keras.saving.serialize_keras_object(schedule)
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.deserialize_keras_object(config)
    restored = keras.saving.deserialize_keras_object(config, safe_mode=False)
    np.testing.assert_allclose(_values(restored), 0.1)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: schedules.PiecewiseConstant([200, 100], [1.0, 0.5, 0.0]), "strictly increasing"),
        (lambda: schedules.PiecewiseConstant([100], [1.0, 0.5, 0.0]), "one more entry"),
        (lambda: schedules.PiecewiseConstant([100], [1.0, -0.5]), "values"),
        (lambda: schedules.PiecewiseConstant([0], [1.0, 0.5]), "boundaries"),
        (lambda: schedules.ExponentialDecay(1.0, 10, 1.5), "decay_rate"),
        (lambda: schedules.ExponentialDecay(1.0, 0, 0.5), "decay_steps"),
        (lambda: schedules.ExponentialDecay(0.5, 10, 0.5, floor=1.0), "floor"),
        (lambda: schedules.ExponentialDecay(float("nan"), 10, 0.5), "initial_sigma"),
        (lambda: schedules.InverseTimeDecay(1.0, 10, power=0.5), "square-summable"),
        (lambda: schedules.CosineDecay(0.5, 10, final_sigma=1.0), "final_sigma"),
        (lambda: schedules.Callable(3.0), "fn"),
        (lambda: schedules.get("fast"), "sigma"),
        (lambda: schedules.get(lambda step: 0.5 - ops.cast(step, "float32")), "σ = -"),
        (lambda: schedules.get(lambda step: ops.log(0.0 * ops.cast(step, "float32") - 1.0)), "σ = nan"),
    ],
)
def test_bad_schedules_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@keras.saving.register_keras_serializable(package="gsmooth_tests")
class SigmaRecorder(keras.layers.Layer, SigmaConsumer):
    """Scales its input by (1 + σ) and records σ at each training call, in the graph."""

    def __init__(self, capacity=64, **kwargs):
        super().__init__(**kwargs)
        self.capacity = capacity
        self._init_sigma(0.0, owner=f"SigmaRecorder {self.name!r}")

    def build(self, input_shape):
        self.history = self.add_weight(shape=(self.capacity,), initializer="zeros", trainable=False, name="history")
        self.count = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="count")

    def call(self, inputs, training=None):
        sigma = self.current_sigma(inputs.dtype)
        if training:
            slot = ops.one_hot(self.count.value, self.capacity, dtype="float32")
            self.history.assign(self.history.value + slot * ops.cast(sigma, "float32"))
            self.count.assign(self.count.value + 1)
        return inputs * (1.0 + sigma)

    def get_config(self):
        return {**super().get_config(), "capacity": self.capacity}


def recording_model(sigma=0.0, capacity=64, units=3):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(units, name="dense")(inputs)
    hidden = SigmaRecorder(capacity, name="recorder")(hidden)
    outputs = keras.layers.Dense(1, name="out")(hidden)
    return SmoothedModel(inputs, outputs, sigma=sigma)


def recorded_sigmas(model):
    recorder = model.get_layer("recorder")
    count = int(ops.convert_to_numpy(recorder.count.value))
    return ops.convert_to_numpy(recorder.history.value)[:count]


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def _execution_settings():
    if keras.backend.backend() == "torch":
        return [(1, False)]
    settings = [(1, False), (4, False)]
    if keras.backend.backend() == "jax":
        settings.append((4, True))
    return settings


@pytest.mark.parametrize("steps_per_execution, jit_compile", _execution_settings())
def test_sigma_at_every_step_equals_schedule(steps_per_execution, jit_compile):
    schedule = schedules.PiecewiseConstant([3, 7, 13], [0.9, 0.45, 0.2, 0.0])
    model = recording_model(sigma=schedule)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="mse",
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile if keras.backend.backend() == "jax" else "auto",
    )
    x, y = _data(32)
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    expected = _values(schedule, range(16))
    np.testing.assert_array_equal(recorded_sigmas(model), expected.astype("float32"))
    assert int(ops.convert_to_numpy(model.sigma_step.value)) == 16
    assert float(ops.convert_to_numpy(model.sigma.value)) == np.float32(expected[-1])


def test_evaluate_and_predict_use_current_sigma_and_do_not_advance():
    schedule = schedules.ExponentialDecay(0.8, 2, 0.5)
    model = recording_model(sigma=schedule)
    model.compile(optimizer="sgd", loss="mse")
    x, y = _data(8)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    step, sigma = int(ops.convert_to_numpy(model.sigma_step.value)), float(ops.convert_to_numpy(model.sigma.value))
    assert step == 2 and sigma == pytest.approx(0.8 * 0.5**0.5, rel=1e-6)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert int(ops.convert_to_numpy(model.sigma_step.value)) == step
    assert float(ops.convert_to_numpy(model.sigma.value)) == sigma
    assert len(recorded_sigmas(model)) == 2
