"""Experiment machinery: data sets, noise, the resumable grid runner, heatmaps, the main job.

The main job is `python -m keras_gsmooth.experiments` (`--help` for options).
"""

from keras_gsmooth.experiments.data import Dataset
from keras_gsmooth.experiments.data import DatasetUnavailableError
from keras_gsmooth.experiments.data import load_dataset
from keras_gsmooth.experiments.grid import ResultsFile
from keras_gsmooth.experiments.grid import format_table
from keras_gsmooth.experiments.grid import merge_results
from keras_gsmooth.experiments.grid import read_results
from keras_gsmooth.experiments.grid import run_grid
from keras_gsmooth.experiments.grid import shard_cells
from keras_gsmooth.experiments.grid import summarize
from keras_gsmooth.experiments.noise import add_input_noise
from keras_gsmooth.experiments.noise import add_label_noise
from keras_gsmooth.experiments.plots import plot_noise_heatmaps
from keras_gsmooth.experiments.training import ImageCell
from keras_gsmooth.experiments.training import ImageExperiment
from keras_gsmooth.experiments.training import UpdateNorms
from keras_gsmooth.experiments.training import build_model
from keras_gsmooth.experiments.training import fit_and_evaluate
from keras_gsmooth.experiments.training import noisy_splits
