"""Heatmaps of accuracy over the noise grid, like the paper's Figures 5–8.

Each figure holds one panel per value of a field (σ by default): input-noise
sd on the x axis, the fraction of changed labels on the y axis, every square
annotated with the mean accuracy ± its spread over seeds. Panels share one
colour scale. Matplotlib runs on the Agg backend (no display needed).
"""

from collections.abc import Sequence

import numpy as np


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(field: str, value) -> str:
    return f"{field}={value:g}" if isinstance(value, float) else f"{field}={value}"


def plot_noise_heatmaps(
    summary: Sequence[dict],
    path: str,
    panel_field: str = "sigma",
    metric: str = "test_accuracy",
    title: str = "",
) -> str:
    """Draws one heatmap per value of `panel_field` and saves the figure.

    Args:
        summary: Entries of `grid.summarize` grouped by at least
            `input_noise`, `label_noise` and `panel_field`, all for one
            data set and optimizer.
        path: The PNG file to write.
        panel_field: The field that varies between panels.
        metric: The metric; the entries need `<metric>_mean` and `<metric>_std`.
        title: The figure's title.

    Returns:
        `path`.

    Raises:
        ValueError: if `summary` is empty.
    """
    if not summary:
        raise ValueError(f"plot_noise_heatmaps: nothing to plot for {path}.")
    plt = pyplot()
    panels = sorted({entry[panel_field] for entry in summary})
    sds = sorted({entry["input_noise"] for entry in summary})
    fractions = sorted({entry["label_noise"] for entry in summary})
    means = [100 * entry[f"{metric}_mean"] for entry in summary]
    low, high = min(means), max(means)
    if high - low < 1.0:  # one colour scale of at least one percentage point
        low, high = (low + high) / 2 - 0.5, (low + high) / 2 + 0.5
    figure, axes = plt.subplots(
        1, len(panels), figsize=(1.2 + 0.9 * len(sds) * len(panels), 1.4 + 0.7 * len(fractions)), squeeze=False
    )
    for axis, panel in zip(axes[0], panels):
        grid = np.full((len(fractions), len(sds)), np.nan)
        notes = {}
        for entry in summary:
            if entry[panel_field] != panel:
                continue
            i, j = fractions.index(entry["label_noise"]), sds.index(entry["input_noise"])
            grid[i, j] = 100 * entry[f"{metric}_mean"]
            notes[i, j] = f"{grid[i, j]:.1f}\n±{100 * entry[f'{metric}_std']:.1f}"
        image = axis.imshow(grid, cmap="viridis", vmin=low, vmax=high, origin="lower", aspect="auto")
        for (i, j), note in notes.items():
            colour = "white" if grid[i, j] < (low + high) / 2 else "black"
            axis.text(j, i, note, ha="center", va="center", fontsize=7, color=colour)
        axis.set_xticks(range(len(sds)), [f"{sd:g}" for sd in sds])
        axis.set_yticks(range(len(fractions)), [f"{100 * f:.0f}%" for f in fractions])
        axis.set_xlabel("input noise sd")
        axis.set_title(_label(panel_field, panel), fontsize=9)
    axes[0][0].set_ylabel("labels changed")
    figure.colorbar(image, ax=axes[0].tolist(), label=f"{metric} (%)", shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
