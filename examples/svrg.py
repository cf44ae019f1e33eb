"""Pipeline 4: GSmoothSVRG (the paper's appendix F) against SGD and SVRG.

Repeats the noisy-MNIST experiment of appendix F.2: batch size 1, one
epoch, learning rate 0.01 for every method, and records the norm of every
update ‖x_t − x_{t−1}‖. Methods: SGD (σ = 0), GSmoothSGD (σ = 0.1), SVRG
(GSmoothSVRG at σ = 0) and GSmoothSVRG (σ = 0.1, τ = σ: SVRG on f_σ, as in
the paper), one snapshot of the full gradient per epoch. The report gives,
per noise cell, the test accuracy (the heatmaps of Figures 7–8, one panel
per σ in each optimizer's PNG) and the standard deviation of the update
norm (`update_norm_std`, the paper's Figure 9), mean ± sd over seeds.

Same machinery and options as the main job (resumable, `--shard k/n`,
`merge`); `--help` lists them all.

    python examples/svrg.py --dataset mnist --seeds 0 1 2 --output-dir runs/svrg
    python examples/svrg.py --quick --output-dir /tmp/svrg
"""

import sys

from keras_gsmooth.experiments.cli import SVRG_PROBES
from keras_gsmooth.experiments.cli import SVRG_PROTOCOL
from keras_gsmooth.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main(defaults=SVRG_PROTOCOL, prog="svrg.py", description=__doc__, probes=SVRG_PROBES))
