"""The benchmark suite runs and writes its Markdown page and CSV (correctness only, no timing)."""

import csv
import dataclasses
import importlib
import math
import pathlib

import keras
import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def suite(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("suite")


def tiny(suite):
    """The quick settings, shrunk further: every benchmark runs once, briefly.

    The train step runs the zero-order estimator and the accuracy benchmark
    the first-order one, so that both code paths run.
    """
    return dataclasses.replace(
        suite.QUICK,
        name="tiny",
        batches=(2,),
        montecarlo=(("zero_order", 1),),
        rounds=1,
        warmup=0,
        accuracy_samples=(1,),
        accuracy_estimators=(("first_order", False),),
        accuracy_seeds=2,
        accuracy_rounds=1,
        identity_draws=50,
        memory_batch=2,
        memory_candidates=("plain",),
    )


def context(suite):
    return {"machine": suite.machine(), "date": "today", "command": "python benchmarks/suite.py", "load_after": "0.0"}


@pytest.mark.slow
def test_quick_run_writes_markdown_and_csv(suite, tmp_path):
    settings = tiny(suite)
    result = suite.run_backend(settings)
    page, table = suite.report.write([result], settings, str(tmp_path), context(suite))

    backend = keras.backend.backend()
    text = pathlib.Path(page).read_text(encoding="utf-8")
    for heading in ("# Benchmarks", "## Train step of the paper CNN", "## Accuracy of Monte-Carlo gradients", "## Memory of one train step"):
        assert heading in text
    for label in ("plain", "explicit (closed form)", "reference: silu for relu", "MC zero-order, K=1", "MC first-order, K=1"):
        assert f"| {label} |" in text
    assert ("| reference: plain, XLA |" in text) == (backend == "tensorflow")
    assert "nan" not in text.lower().split()
    assert 'warning "Tiny mode' in text

    with open(table, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {row["backend"] for row in rows} == {backend}
    assert {row["benchmark"] for row in rows} == {"train_step", "identity_check", "accuracy", "memory"}
    assert all(math.isfinite(float(row["value"])) for row in rows)
    values = {(row["benchmark"], row["candidate"], row["metric"]): float(row["value"]) for row in rows}
    assert values[("train_step", "plain", "ratio_to_plain")] == 1.0
    assert values[("memory", "plain", "step_memory_mb")] > 0
    # The closed form's gradient is exact up to float32 rounding; one Monte-Carlo sample is not.
    closed_form = values[("accuracy", "closed form (smooth_model)", "relative_error")]
    assert closed_form < 1e-5
    assert values[("accuracy", "MC first-order, K=1", "relative_error")] > 100 * closed_form


def synthetic_result(backend: str, explicit_ratio: float, montecarlo_ratio: float, eager_ratio=None, silu_ratio=None) -> dict:
    """A result in the format of `suite.run_backend`, with chosen ratios at batch 128."""

    def step(key, label, ratio, samples=None):
        return {
            "candidate": label, "key": key, "median_ms": 10.0 * ratio, "ratio": ratio,
            "per_sample_ratio": ratio / samples if samples else None, "first_call_s": 1.0,
        }

    accuracy_row = {
        "candidate": "MC first-order, K=4", "method": "first_order", "antithetic": False, "K": 4,
        "passes": "4 forward + backward", "error": 0.5, "error_se": 0.1, "median_ms": 2.0, "ratio": 2.0,
        "k_closed_form": 10**13, "k_one_percent": 10**4,
    }
    return {
        "backend": backend,
        "versions": {"keras": "3", backend: "1"},
        "parameters": 1000,
        "elapsed_s": 1.0,
        "train_step": {
            "128": [
                step("plain", "plain", 1.0),
                step("explicit", "explicit (closed form)", explicit_ratio),
                *([step("explicit-eager", "explicit, eager torch kernels", eager_ratio)] if eager_ratio else []),
                *([step("silu", "reference: silu for relu", silu_ratio)] if silu_ratio else []),
                step("mc-first_order-16", "MC first-order, K=16", montecarlo_ratio, 16),
            ]
        },
        "accuracy": {
            "identities": {"loss": 1.0, "mc_shift": 0.5, "mc_shift_standard_error": 0.01, "constant": 0.5, "closed_form_minus_loss": 0.0},
            "plain_ms": 1.0,
            "rows": [accuracy_row],
        },
        "memory": {"batch": 128, "rows": [{"key": "plain", "candidate": "plain", "step_mb": 10.0, "method": "m", "process_peak_mb": 900.0, "ratio": 1.0}]},
    }


def test_report_checks_the_issue_targets(suite):
    settings = dataclasses.replace(suite.FULL, batches=(128,))
    results = [synthetic_result("jax", 1.1, 16.0, silu_ratio=1.5), synthetic_result("torch", 1.25, 8.0, eager_ratio=2.5)]
    text = suite.report.markdown(results, settings, context(suite))
    assert (
        "- jax, batch 128: explicit 1.10× plain (target ≤ 1.2×): met; reference: silu for relu 1.50×; "
        "MC first-order K = 16 16.00× plain (target ≥ 10×): met." in text
    )
    assert (
        "- torch, batch 128: explicit 1.25× plain (target ≤ 1.3×): met; with eager torch kernels 2.50×; "
        "MC first-order K = 16 8.00× plain (target ≥ 10×): **not met**." in text
    )
    # A candidate that only one backend has gets dashes in the other's columns.
    assert "| explicit, eager torch kernels | – | – | 25.00 | 2.50× |" in text
    assert text.index("| explicit (closed form) |") < text.index("| explicit, eager torch kernels |") < text.index("| MC first-order, K=16 |")
    assert "warning" not in text
    # Cost at equal accuracy: K times the cost per sample of the largest first-order K (16× / 16 = 1×).
    assert "| jax | first-order | 1.0e+13 | 1.0e+13 | 10000 | 10000 |" in text


def test_unknown_candidate_is_refused(suite):
    candidates = importlib.import_module("candidates")
    assert candidates.Candidate.parse("mc-zero_order-64").num_samples == 64
    with pytest.raises(ValueError, match="unknown candidate 'mc-second_order-4'"):
        candidates.Candidate.parse("mc-second_order-4")


def test_reference_candidates_copy_the_plain_network_and_its_compilation(suite):
    """`plain-xla` is the plain network with XLA on TensorFlow; `silu` the same weights with silu for relu."""
    candidates = importlib.import_module("candidates")
    keys = [candidate.key for candidate in candidates.candidate_list(())]
    backend = keras.backend.backend()
    assert keys == ["plain", "explicit"] + ["explicit-eager"] * (backend == "torch") + ["plain-xla"] * (backend == "tensorflow") + ["silu"]
    models = candidates.build([candidates.Candidate.parse(key) for key in ("plain", "plain-xla", "silu")])
    plain, plain_xla, silu = models.values()
    images = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype("float32")
    for reference in (plain_xla, silu):
        assert reference is not plain
        assert reference.jit_compile == (backend != "torch")
        for ours, theirs in zip(reference.get_weights(), plain.get_weights(), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(plain_xla.predict(images, verbose=0), plain.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    activations = [layer.get_config()["activation"] for layer in silu.layers if isinstance(layer, keras.layers.Activation)]
    assert activations == ["silu", "silu"]
    assert [layer.get_config()["activation"] for layer in plain.layers if isinstance(layer, keras.layers.Activation)] == ["relu", "relu"]


def test_optimizer_benchmark_trains_every_configuration(monkeypatch):
    """`bench_optimizers.py` fits every optimizer (schedules and SVRG's snapshot included) and reports a rate for each."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_optimizers")
    runs = bench.build_runs(batch_size=2, steps=2)
    results = bench.benchmark(runs, steps=2, repeats=1)
    assert set(results) == set(bench.CONFIGS) == set(bench.BASELINE)
    assert all(math.isfinite(rate) and rate > 0 and math.isfinite(ratio) and ratio > 0 for rate, ratio in results.values())
    assert results["sgd"][1] == results["adam"][1] == 1.0
    paired = bench.paired_step_ratios(runs, rounds=2)
    assert set(paired) == set(bench.CONFIGS)
    assert paired["sgd"] == paired["adam"] == 1.0 and all(ratio > 0 for ratio in paired.values())


def test_train_step_benchmark_measures_plain_and_smoothed(monkeypatch):
    """`train_step.py` (and with it CI's regression guard) times both models."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    train_step = importlib.import_module("train_step")
    medians = train_step.measure(batch=2, rounds=1)
    assert set(medians) == {"plain", "smoothed"}
    assert all(seconds > 0 for seconds in medians.values())
