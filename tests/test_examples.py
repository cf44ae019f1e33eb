"""Smoke tests of the example pipelines: each runs in its --quick mode and writes its CSV and figures."""

import importlib.util
import os

import numpy as np
import pytest

from keras_gsmooth.experiments.grid import read_results

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _written(directory, *names):
    for name in names:
        path = os.path.join(directory, name)
        assert os.path.exists(path) and os.path.getsize(path) > 0, f"{name} was not written"


def test_quick_start(tmp_path):
    rows = _example("quick_start").main(["--quick", "--output-dir", str(tmp_path)])
    assert [row["model"] for row in rows] == ["plain", "smoothed"]
    _written(tmp_path, "quick_start.csv", "quick_start.png")


def test_noise_heatmaps(tmp_path):
    module = _example("noise_heatmaps")
    assert module.main(["--quick", "--dataset", "mnist_sample", "--verbose", "0", "--output-dir", str(tmp_path)],
                       defaults=module.PAPER_PROTOCOL) == 0
    rows = read_results(str(tmp_path / "results.csv"))
    assert sorted(row["sigma"] for row in rows) == [0.0, 1.0]
    assert all(row["batch_size"] == 1 and row["loss"] == "mse" for row in rows)
    _written(tmp_path, "results_table.txt", "heatmap_mnist_sample_adam_paper-lr.png",
             "heatmap_mnist_sample_adam_best-val.png")


def test_one_dimensional_figures(tmp_path):
    result = _example("one_dimensional_figures").main(["--quick", "--output-dir", str(tmp_path)])
    threshold = result["thresholds"][1]
    assert 0.8 < threshold < 0.86  # SPEC §5: f_σ of Figure 2 is convex for σ ≳ 0.82–0.85
    shares = list(result["basins"].values())
    assert shares[1] == 1.0 and shares[0] < 0.5  # continuation finds x* from every start, plain GD does not
    _written(tmp_path, "figure1.png", "figure2.png", "basins.csv", "thresholds.csv")


def test_convexity_threshold_is_where_the_curvature_turns_positive():
    module = _example("one_dimensional_figures")
    function = module.SmoothedFunction([1 / 3, 0.0, -2 / 3, 0.0, 0.0], amplitude=1.0, frequency=8.0)
    threshold = function.convexity_threshold()
    x = np.linspace(-3, 3, 200_001)
    assert function.value(x, threshold + 1e-3, derivative=2).min() >= 0
    assert function.value(x, threshold - 1e-3, derivative=2).min() < 0


def test_svrg(tmp_path):
    module = _example("svrg")
    module.main(["--quick", "--dataset", "mnist_sample", "--verbose", "0", "--output-dir", str(tmp_path)],
                defaults=module.SVRG_PROTOCOL, probes=module.SVRG_PROBES)
    rows = read_results(str(tmp_path / "results.csv"))
    assert {(row["optimizer"], row["sigma"]) for row in rows} == {("svrg", 0.0), ("svrg", 0.1)}
    assert all(row["update_norm_std"] >= 0 and row["update_norm_mean"] > 0 for row in rows)
    assert "update_norm_std" in open(tmp_path / "results_table.txt").read()
    _written(tmp_path, "heatmap_mnist_sample_svrg_best-val.png")


def test_continuation(tmp_path):
    rows = _example("continuation").main(["--quick", "--verbose", "0", "--output-dir", str(tmp_path)])
    assert [row["schedule"] for row in rows] == ["fixed-0", "continuation"]
    _written(tmp_path, "continuation.csv", "continuation_table.txt", "continuation.png")


@pytest.mark.montecarlo
def test_montecarlo_vs_explicit(tmp_path):
    rows = _example("montecarlo_vs_explicit").main(["--quick", "--verbose", "0", "--output-dir", str(tmp_path)])
    assert [row["method"] for row in rows] == ["plain", "explicit", "montecarlo-1"]
    assert all(row["seconds_per_epoch"] > 0 for row in rows)
    _written(tmp_path, "montecarlo.csv", "montecarlo_table.txt", "montecarlo.png")


def test_hyperparameter_search(tmp_path):
    pytest.importorskip("keras_tuner")
    result = _example("hyperparameter_search").main(["--quick", "--output-dir", str(tmp_path)])
    assert len(result["trials"]) == 2
    _written(tmp_path, "search.csv", "best.txt", "search.png")


@pytest.mark.parametrize(
    "name", ["quick_start", "noise_heatmaps", "one_dimensional_figures", "svrg", "continuation",
             "montecarlo_vs_explicit", "hyperparameter_search"]
)
def test_every_example_explains_its_options(name, capsys):
    if name == "hyperparameter_search":
        pytest.importorskip("keras_tuner")
    with pytest.raises(SystemExit) as exit_info:
        _example(name).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--output-dir" in text
