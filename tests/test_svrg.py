"""GSmoothSVRG: against a NumPy reference of Algorithm 3, variance reduction, saving, bad input."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_gsmooth import backend
from keras_gsmooth import schedules
from keras_gsmooth.sigma import SigmaConsumer
from keras_gsmooth.sigma import SmoothedModel
from keras_gsmooth.svrg import GSmoothSVRG
from keras_gsmooth.svrg import SVRGSnapshot


@keras.saving.register_keras_serializable(package="gsmooth_tests")
class SmoothSine(keras.layers.Layer, SigmaConsumer):
    """sin_σ(z) = sin(z)·e^{−σ²/4} (SPEC §2)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._init_sigma(0.0, owner="SmoothSine")

    def call(self, inputs):
        return ops.sin(inputs) * ops.exp(-self.current_sigma(inputs.dtype) ** 2 / 4)


def _sine_model():
    inputs = keras.Input((3,))
    outputs = SmoothSine()(keras.layers.Dense(1, name="dense")(inputs))
    return SmoothedModel(inputs, outputs)


def _sine_gradient(x, y, w, b, sigma):
    z = x @ w + b
    scale = np.exp(-(sigma**2) / 4)
    common = 2 * (scale * np.sin(z) - y) * scale * np.cos(z) / len(x)
    return x.T @ common, common.sum(axis=0)


def _reference_svrg(x, y, w, b, schedule, tau, inner_steps, batch_size, epochs, learning_rate):
    """Algorithm 3 with the last inner iterate as the next snapshot, in NumPy (float64)."""
    steps_per_epoch = len(x) // batch_size
    since = None
    for epoch in range(epochs):
        for i in range(steps_per_epoch):
            t = epoch * steps_per_epoch + i
            sigma = float(ops.convert_to_numpy(schedule(ops.convert_to_tensor(t, "int32"))))
            if since is None or (inner_steps is None and i == 0) or (inner_steps is not None and since >= inner_steps):
                w_snap, b_snap = w.copy(), b.copy()
                tau_s = sigma if tau == "matched" else tau
                mu = _sine_gradient(x, y, w_snap, b_snap, tau_s)
                since = 0
            batch = slice(i * batch_size, (i + 1) * batch_size)
            g = _sine_gradient(x[batch], y[batch], w, b, sigma)
            g_snap = _sine_gradient(x[batch], y[batch], w_snap, b_snap, tau_s)
            w = w - learning_rate * (g[0] - g_snap[0] + mu[0])
            b = b - learning_rate * (g[1] - g_snap[1] + mu[1])
            since += 1
    return w, b


def _reference_cases():
    cases = [("matched", None, 1), ("matched", 2, 1), (0.0, 4, 1)]
    if keras.backend.backend() != "torch":  # PyTorch runs one step per execution only
        cases.append(("matched", 2, 2))
    return cases


@pytest.mark.parametrize("tau, inner_steps, steps_per_execution", _reference_cases())
def test_matches_numpy_reference_of_algorithm_3(tau, inner_steps, steps_per_execution):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = np.sin(x @ np.array([[0.5], [-1.0], [0.8]], "float32") + 0.2).astype("float32")
    schedule = schedules.PiecewiseConstant([8], [0.6, 0.3])
    model = _sine_model()
    model.compile(
        optimizer=GSmoothSVRG(0.2, sigma=schedule, tau=tau, inner_steps=inner_steps),
        loss="mse",
        steps_per_execution=steps_per_execution,
    )
    w0, b0 = (ops.convert_to_numpy(v).astype("float64") for v in model.get_layer("dense").get_weights())
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[SVRGSnapshot(x, y, batch_size=8)])
    w, b = _reference_svrg(x.astype("float64"), y.astype("float64"), w0, b0, schedule, tau, inner_steps, 4, 3, 0.2)
    ours_w, ours_b = model.get_layer("dense").get_weights()
    assert np.abs(w - w0).max() > 1e-2  # it moved
    np.testing.assert_allclose(ours_w, w, atol=1e-4)
    np.testing.assert_allclose(ours_b, b, atol=1e-4)


def test_logged_loss_is_the_loss_before_the_step():
    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    y = np.sin(x[:, :1])
    model = _sine_model()
    model.compile(optimizer=GSmoothSVRG(0.5, sigma=0.3), loss="mse", metrics=["mae"])
    loss, mae = model.evaluate(x, y, batch_size=8, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[SVRGSnapshot(x, y)])
    np.testing.assert_allclose(history.history["loss"][0], loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["mae"][0], mae, rtol=1e-5)
    assert history.history["loss"][1] < loss


@pytest.mark.requires_backend("tensorflow", "torch")
def test_gradient_of_variables_matches_gradient_of_values():
    variables = [keras.Variable(np.array([1.0, -2.0], "float32")), keras.Variable(np.ones((2,), "float32"))]
    (value, aux), gradients = backend.variables_value_and_grad(lambda: (ops.sum(variables[0] ** 3), "aux"), variables, has_aux=True)
    (expected, _), expected_gradients = backend.value_and_grad(lambda v: (ops.sum(v[0] ** 3), "aux"), [v.value for v in variables], has_aux=True)
    assert aux == "aux"
    np.testing.assert_allclose(ops.convert_to_numpy(value), ops.convert_to_numpy(expected))
    np.testing.assert_allclose(ops.convert_to_numpy(gradients[0]), [3.0, 12.0])
    np.testing.assert_array_equal(ops.convert_to_numpy(gradients[1]), [0.0, 0.0])  # unused: zeros
    for ours, theirs in zip(gradients, expected_gradients):
        np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs))


@pytest.mark.requires_backend("jax")
def test_gradient_of_variables_on_jax_points_to_value_and_grad():
    variable = keras.Variable(np.ones((2,), "float32"))
    with pytest.raises(ValueError, match="value_and_grad"):
        backend.variables_value_and_grad(lambda: ops.sum(variable), [variable])


def test_computed_after_keeps_the_values():
    value = {"a": ops.convert_to_tensor(np.array([1.5, -2.0], "float32")), "b": ops.ones((2, 2), "float16")}
    ordered = backend.computed_after(value, [ops.convert_to_tensor(np.array([3.0, 4.0], "float32"))])
    for key in value:
        assert ordered[key].dtype == value[key].dtype
        np.testing.assert_array_equal(ops.convert_to_numpy(ordered[key]), ops.convert_to_numpy(value[key]))


@pytest.mark.requires_backend("jax")
def test_computed_after_makes_the_value_depend_on_the_dependency():
    import jax

    program = jax.make_jaxpr(lambda v, d: backend.computed_after(v, d) * 2.0)(np.ones(3, "float32"), np.ones(2, "float32"))
    used = {str(v) for equation in program.jaxpr.eqns for v in equation.invars}
    assert str(program.jaxpr.invars[1]) in used  # the output is computed from the dependency too


class _UpdateNorms(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.norms, self._last = [], self._weights()

    def _weights(self):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        return np.concatenate([np.ravel(ops.convert_to_numpy(w.value)) for w in self.model.trainable_weights])

    def on_train_batch_end(self, batch, logs=None):
        current = self._weights()
        self.norms.append(np.linalg.norm(current - self._last))
        self._last = current


def _least_squares_updates(optimizer, snapshot):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 * rng.normal(size=(48, 1))).astype("float32")
    inputs = keras.Input((3,))
    model = SmoothedModel(inputs, keras.layers.Dense(1, use_bias=False, name="dense")(inputs))
    solution, *_ = np.linalg.lstsq(x, y, rcond=None)
    model.get_layer("dense").set_weights([solution + 0.01])
    model.compile(optimizer=optimizer, loss="mse")
    norms = _UpdateNorms()
    callbacks = [SVRGSnapshot(x, y, batch_size=48)] if snapshot else []
    model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=callbacks + [norms])
    return np.array(norms.norms)


def test_update_variance_is_lower_than_sgd_near_the_optimum():
    sgd = _least_squares_updates(keras.optimizers.SGD(0.02), snapshot=False)
    svrg = _least_squares_updates(GSmoothSVRG(0.02), snapshot=True)
    assert svrg.std() < 0.1 * sgd.std()
    assert np.mean(svrg**2) < 0.01 * np.mean(sgd**2)


def test_saved_mid_training_restores_optimizer_and_snapshot(tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.sin(x[:, :1])
    model = _sine_model()
    model.compile(optimizer=GSmoothSVRG(0.1, sigma=0.2, tau=0.0, inner_steps=3), loss="mse")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[SVRGSnapshot(x, y)])
    assert model.optimizer.snapshot_iteration == 3
    path = str(tmp_path / "svrg.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, GSmoothSVRG)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    assert restored.optimizer.snapshot_iteration == 3
    for a, b in zip(restored.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_svrg_on_an_unsmoothed_model_is_an_error():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=GSmoothSVRG(0.01), loss="mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    with pytest.raises(ValueError, match="not a smoothed model"):
        model.fit(x, y, verbose=0)
    with pytest.raises(TypeError, match="expected a smoothed model"):
        SVRGSnapshot(x, y).set_model(model)


def test_svrg_bad_input_errors():
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    model = _sine_model()
    model.compile(optimizer=GSmoothSVRG(0.01, sigma=0.1), loss="mse")
    with pytest.raises(ValueError, match="SVRGSnapshot"):
        model.fit(x, y, verbose=0)
    other = _sine_model()
    other.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    with pytest.raises(ValueError, match="not GSmoothSVRG"):
        other.fit(x, y, verbose=0, callbacks=[SVRGSnapshot(x, y)])
    too_large = _sine_model()
    too_large.compile(optimizer=GSmoothSVRG(0.01, sigma=0.1, tau=0.5), loss="mse")
    with pytest.raises(ValueError, match="exceeds"):
        too_large.fit(x, y, verbose=0, callbacks=[SVRGSnapshot(x, y)])
    for bad in [dict(tau="half"), dict(tau=-0.1), dict(inner_steps=0), dict(sigma=float("nan"))]:
        with pytest.raises(ValueError):
            GSmoothSVRG(0.01, **bad)


@pytest.mark.requires_backend("jax", "tensorflow")
def test_inner_steps_must_be_a_multiple_of_steps_per_execution():
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model = _sine_model()
    model.compile(optimizer=GSmoothSVRG(0.01, inner_steps=3), loss="mse", steps_per_execution=2)
    with pytest.raises(ValueError, match="multiple of steps_per_execution"):
        model.fit(x, y, batch_size=1, verbose=0, callbacks=[SVRGSnapshot(x, y)])
