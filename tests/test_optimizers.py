"""GSmoothSGD and GSmoothAdam: equal to Keras's SGD/Adam at constant σ, schedules, saving, callbacks, continuation."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_gsmooth import backend
from keras_gsmooth import schedules
from keras_gsmooth.layers import SmoothActivation
from keras_gsmooth.optimizers import GSmoothAdam
from keras_gsmooth.optimizers import GSmoothSGD
from keras_gsmooth.sigma import SigmaConsumer
from keras_gsmooth.sigma import SmoothedModel
from test_schedules import _data
from test_schedules import _values
from test_schedules import recorded_sigmas
from test_schedules import recording_model


def _weights(model):
    return [ops.convert_to_numpy(w) for w in model.get_weights()]


def _twin(model, sigma):
    twin = recording_model(sigma=sigma)
    twin.set_weights(model.get_weights())
    return twin


@pytest.mark.parametrize(
    "gsmooth, keras_optimizer",
    [
        (lambda: GSmoothSGD(0.05, momentum=0.9, sigma=0.3), lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
        (lambda: GSmoothAdam(0.01, sigma=0.3), lambda: keras.optimizers.Adam(0.01)),
    ],
    ids=["sgd", "adam"],
)
def test_constant_sigma_equals_keras_optimizer_step_for_step(gsmooth, keras_optimizer):
    ours = recording_model()
    ours.compile(optimizer=gsmooth(), loss="mse")
    reference = _twin(ours, sigma=0.3)
    reference.compile(optimizer=keras_optimizer(), loss="mse")
    x, y = _data(12)
    for _ in range(3):
        ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        reference.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(_weights(ours), _weights(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # PyTorch's CPU kernels differ by an ulp run to run
    np.testing.assert_array_equal(recorded_sigmas(ours), np.full(9, 0.3, "float32"))


def test_optimizer_schedule_drives_the_model_sigma():
    schedule = schedules.ExponentialDecay(0.6, 3, 0.5, floor=0.1)
    model = recording_model()
    model.compile(optimizer=GSmoothAdam(1e-3, sigma=schedule), loss="mse")
    assert model.sigma_schedule is schedule
    x, y = _data(20)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    # Compiled and eager float32 `pow` may differ in the last bit.
    np.testing.assert_allclose(recorded_sigmas(model), _values(schedule, range(10)), rtol=1e-6)


def test_sigma_given_twice_is_an_error():
    model = recording_model(sigma=0.5)
    with pytest.raises(ValueError, match="σ is given twice"):
        model.compile(optimizer=GSmoothSGD(0.01, sigma=0.1), loss="mse")
    model.compile(optimizer=GSmoothSGD(0.01), loss="mse")  # no σ on the optimizer: the model's σ stays
    assert model.sigma_schedule.sigma == 0.5


@pytest.mark.parametrize(
    "options, expected",
    [({}, "xla"), ({"jit_compile": False}, False), ({"run_eagerly": True}, "auto"), ({"jit_compile": True}, True)],
)
def test_smoothed_model_compiles_with_xla_on_tensorflow_unless_told_otherwise(options, expected):
    """`jit_compile="auto"` means XLA on TensorFlow for closed forms without native kernels
    (`backend.smoothed_jit_compile`); other settings stay."""
    on_tensorflow = keras.backend.backend() == "tensorflow"
    resolved = (True if on_tensorflow else "auto") if expected == "xla" else expected
    assert backend.smoothed_jit_compile(options.get("jit_compile", "auto"), options.get("run_eagerly", False)) == resolved
    inputs = keras.Input((4,))
    hidden = SmoothActivation("gelu", regularization=1e-3)(keras.layers.Dense(3)(inputs))
    model = SmoothedModel(inputs, keras.layers.Dense(1)(hidden), sigma=0.1)
    model.compile(optimizer="sgd", loss="mse", **options)
    plain = keras.Model(model.inputs, model.outputs)
    plain.compile(optimizer="sgd", loss="mse", **{**options, "jit_compile": resolved})
    assert model.jit_compile == plain.jit_compile
    if on_tensorflow and expected == "xla":
        assert model.jit_compile is True


def test_plain_keras_model_with_a_sigma_schedule_is_an_error():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=GSmoothSGD(0.01, sigma=0.1), loss="mse")
    x, y = _data(4)
    with pytest.raises(ValueError, match="not a smoothed model"):
        model.fit(x, y, verbose=0)


@pytest.mark.parametrize("optimizer_class", [GSmoothSGD, GSmoothAdam])
def test_optimizer_config_round_trip(optimizer_class):
    schedule = schedules.PiecewiseConstant([100, 200], [1.0, 0.5, 0.0])
    optimizer = optimizer_class(learning_rate=0.02, sigma=schedule)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is optimizer_class
    assert restored.get_config() == optimizer.get_config()
    assert restored.sigma_schedule.get_config() == schedule.get_config()
    assert optimizer_class(sigma=None).get_config()["sigma"] is None
    with pytest.raises(ValueError, match="sigma"):
        optimizer_class(sigma=-1.0)


def _resume_model(schedule):
    model = recording_model(capacity=16)
    model.compile(optimizer=GSmoothSGD(0.05, momentum=0.9, sigma=schedule), loss="mse")
    return model


def test_resume_mid_schedule_matches_uninterrupted_run(tmp_path):
    schedule = schedules.PiecewiseConstant([2, 5, 9], [0.8, 0.4, 0.2, 0.0])
    x, y = _data(24)
    uninterrupted = _resume_model(schedule)
    start = uninterrupted.get_weights()
    uninterrupted.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)

    interrupted = _resume_model(schedule)
    interrupted.set_weights(start)
    interrupted.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "mid_schedule.keras")
    interrupted.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, GSmoothSGD)
    assert int(ops.convert_to_numpy(restored.sigma_step.value)) == 6
    restored.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)

    np.testing.assert_array_equal(recorded_sigmas(restored), recorded_sigmas(uninterrupted))
    np.testing.assert_array_equal(recorded_sigmas(restored), _values(schedule, range(12)).astype("float32"))
    for a, b in zip(_weights(restored), _weights(uninterrupted)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_works_with_keras_callbacks(tmp_path):
    model = recording_model()
    model.compile(optimizer=GSmoothSGD(0.05, sigma=schedules.CosineDecay(0.5, 10)), loss="mse")
    x, y = _data(16)
    path = str(tmp_path / "best.keras")
    history = model.fit(
        x,
        y,
        batch_size=4,
        epochs=4,
        validation_data=(x, y),
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=1),
            keras.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True),
            keras.callbacks.LearningRateScheduler(lambda epoch, rate: 0.05 / (1 + epoch)),
        ],
    )
    assert history.history["learning_rate"][-1] == pytest.approx(0.05 / len(history.history["loss"]))
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, GSmoothSGD)
    assert restored.sigma_schedule.get_config() == model.sigma_schedule.get_config()


@keras.saving.register_keras_serializable(package="gsmooth_tests")
class Figure2Objective(keras.layers.Layer, SigmaConsumer):
    """f_σ(w) for f(w) = (w⁴ − 2w²)/3 + sin(8w) (SPEC §5), one weight, closed form.

    With u ~ N(0, s²), s² = σ²/2: E(w+u)⁴ = w⁴ + 6w²s² + 3s⁴, E(w+u)² = w² + s²,
    E sin(8(w+u)) = sin(8w)·e^{−16σ²}.
    """

    def __init__(self, start=1.5, **kwargs):
        super().__init__(**kwargs)
        self.start = start
        self._init_sigma(0.0, owner="Figure2Objective")

    def build(self, input_shape):
        self.w = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.start), name="w")

    def call(self, inputs):
        sigma = self.current_sigma("float32")
        w, s2 = self.w.value, sigma**2 / 2
        quartic = w**4 + 6 * w**2 * s2 + 3 * s2**2
        square = w**2 + s2
        value = (quartic - 2 * square) / 3 + ops.sin(8 * w) * ops.exp(-16 * sigma**2)
        return ops.zeros_like(inputs) + value

    def get_config(self):
        return {**super().get_config(), "start": self.start}


def _descend(optimizer, steps=700):
    inputs = keras.Input((1,))
    model = SmoothedModel(inputs, Figure2Objective(1.5, name="objective")(inputs))
    spe = 1 if keras.backend.backend() == "torch" else 100
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: ops.mean(y_pred), steps_per_execution=spe)
    zeros = np.zeros((steps, 1), "float32")
    model.fit(zeros, zeros, batch_size=1, epochs=1, shuffle=False, verbose=0)
    return float(ops.convert_to_numpy(model.get_layer("objective").w.value))


@pytest.mark.slow
def test_continuation_reaches_the_global_minimum_of_figure_2():
    grid = np.linspace(-2.5, 2.5, 500_001)
    f = (grid**4 - 2 * grid**2) / 3 + np.sin(8 * grid)
    global_minimum = grid[np.argmin(f)]
    plain = _descend(keras.optimizers.SGD(0.02))
    continuation = _descend(GSmoothSGD(0.02, sigma=schedules.PiecewiseConstant([200, 500, 600], [1.0, 0.5, 0.25, 0.0])))
    assert abs(plain - global_minimum) > 1.0  # stuck in the local minimum near 1.35
    assert abs(plain - 1.351) < 1e-2
    assert abs(continuation - global_minimum) < 1e-2


_DATA_PARALLEL_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, keras, numpy as np
    from keras_gsmooth.layers import SmoothActivation
    from keras_gsmooth.optimizers import GSmoothSGD
    from keras_gsmooth.sigma import SmoothedModel
    from keras_gsmooth.svrg import GSmoothSVRG, SVRGSnapshot

    def smoothed_paper_cnn():
        inputs = keras.Input((12, 12, 1))
        x = keras.layers.Conv2D(8, 4, name="conv")(inputs)
        x = SmoothActivation("relu", regularization=1e-3, name="conv_relu")(x)
        x = keras.layers.AveragePooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(16, name="hidden")(x)
        x = SmoothActivation("relu", regularization=1e-3, name="hidden_relu")(x)
        return SmoothedModel(inputs, keras.layers.Dense(10, name="logits")(x))

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 12, 12, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 8)]

    def train(weights, optimizer, callbacks):
        model = smoothed_paper_cnn()
        model.set_weights(weights)
        model.compile(optimizer=optimizer, loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=callbacks)
        return history.history["loss"][0], model.get_weights()

    def runs(weights):
        sgd = train(weights, GSmoothSGD(0.01, sigma=0.5), [])
        svrg = train(weights, GSmoothSVRG(0.01, sigma=0.5), [SVRGSnapshot(x, y)])
        return sgd, svrg

    assert len(jax.devices()) == 2
    weights = smoothed_paper_cnn().get_weights()
    single = runs(weights)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    parallel = runs(weights)
    for (loss_1, weights_1), (loss_2, weights_2) in zip(single, parallel):
        print("LOSSES", loss_1, loss_2)
        for a, b in zip(weights_1, weights_2):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    """
)


@pytest.mark.requires_backend("jax")
@pytest.mark.slow
def test_data_parallel_first_step_equals_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "KERAS_BACKEND": "jax"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _DATA_PARALLEL_SCRIPT], env=env, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("LOSSES")]
    assert len(losses) == 2  # GSmoothSGD and GSmoothSVRG; weights after the step were compared in the script
    for single, parallel in losses:
        assert float(parallel) == pytest.approx(float(single), rel=1e-5)
