"""The main job: `python -m keras_gsmooth.experiments` (or `keras-gsmooth-experiment`).

Runs the paper's noisy-MNIST comparison on the bundled 5,000-image MNIST
sample: the plain CNN against the smoothed CNN, for SGD and Adam, over a
reduced noise grid and several seeds, with early stopping on a validation
split. `--help` lists every option; `merge` merges shard CSVs.
"""

import sys

from keras_gsmooth.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
