"""A resumable, shardable grid runner that writes one CSV row per finished cell.

A grid is a list of cells: frozen dataclasses with a `cell_id` property (a
stable text key, e.g. `training.ImageCell`). `run_grid` runs every cell whose
id is not yet in the CSV and appends its row as soon as it finishes, with one
`write` followed by `flush` and `fsync`, so a run killed at any moment loses
at most the cell it was running, and a restart recomputes nothing that was
written. A partial last line (a kill during the write) is cut off on restart.

`shard_cells(cells, k, n)` keeps every n-th cell starting at k, so `n`
processes or machines (a Slurm array with `--array=0-(n-1)`, or any job
runner) can split a grid, each writing its own CSV; `merge_results` merges
them, and `summarize` gives mean ± spread per cell over seeds.
"""

import csv
import dataclasses
import io
import math
import os
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence

import keras


class GridCell:
    """Mixin for the frozen dataclasses that describe one run of a grid.

    Gives every cell a stable text key, `cell_id` (the CSV's first column),
    built from its fields in order.
    """

    @property
    def cell_id(self) -> str:
        """A stable text key of the cell (the CSV's first column)."""
        return "|".join(f"{field.name}={getattr(self, field.name)}" for field in dataclasses.fields(self))


def parse_shard(text: str) -> tuple:
    """Parses `"k/n"` (0 ≤ k < n) into `(k, n)`.

    Raises:
        ValueError: if the text is not of that form.
    """
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise ValueError(
            f"--shard must be 'k/n' with 0 <= k < n (shard k of n, zero-based, "
            f"as a Slurm array index). Received: {text!r}"
        )
    return k, n


def shard_cells(cells: Sequence, k: int, n: int) -> list:
    """Cells `k, k + n, k + 2n, …` of the grid: shard `k` of `n` (zero-based)."""
    return list(cells)[k::n]


def _columns(cells: Sequence, result_fields: Sequence[str]) -> list:
    return ["cell_id", *(field.name for field in dataclasses.fields(cells[0])), *result_fields]


def _csv_line(columns: Sequence[str], row: dict) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([row[column] for column in columns])
    return buffer.getvalue()


def _parse_value(text: str):
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_results(path: str) -> list:
    """Rows of a results CSV as dicts, numbers and booleans parsed."""
    with open(path, newline="") as handle:
        return [{key: _parse_value(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _cut_partial_line(path: str) -> None:
    with open(path, "rb+") as handle:
        content = handle.read()
        if content and not content.endswith(b"\n"):
            keep = content.rfind(b"\n") + 1
            print(f"{path}: dropping an unfinished last line (the run was killed while writing it).")
            handle.truncate(keep)


class ResultsFile:
    """A CSV of results that only ever grows by whole, synced rows.

    Args:
        path: The CSV file; created (with its header) if missing.
        columns: The column names.

    Raises:
        ValueError: if the file exists with other columns.
    """

    def __init__(self, path: str, columns: Sequence[str]):
        self.path = path
        self.columns = list(columns)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            _cut_partial_line(path)
            with open(path, newline="") as handle:
                header = next(csv.reader(handle), [])
            if header != self.columns:
                raise ValueError(
                    f"{path} has columns {header}, but this grid writes {self.columns}. "
                    "Use another output file or directory for a different experiment."
                )
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            temporary = f"{path}.tmp"
            with open(temporary, "w") as handle:
                handle.write(_csv_line(self.columns, {column: column for column in self.columns}))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)

    def completed_ids(self) -> set:
        """The `cell_id`s already written."""
        with open(self.path, newline="") as handle:
            return {row["cell_id"] for row in csv.DictReader(handle)}

    def append(self, row: dict) -> None:
        """Appends one row with a single write, then flushes and fsyncs."""
        with open(self.path, "a") as handle:
            handle.write(_csv_line(self.columns, row))
            handle.flush()
            os.fsync(handle.fileno())


def run_grid(
    cells: Sequence,
    experiment: Callable,
    path: str,
    result_fields: Sequence[str],
    progress: bool = True,
) -> list:
    """Runs every cell not yet in the CSV at `path`, appending a row per cell.

    Args:
        cells: The grid (frozen dataclasses with a `cell_id` property), in order.
        experiment: Called with one cell; returns a dict with `result_fields`.
        path: The results CSV (created if missing, resumed if present).
        result_fields: The names of the result columns.
        progress: Print each cell and an overall Keras progress bar over the grid.

    Returns:
        The CSV's rows (read back, values parsed) for the given cells.

    Example:

    ```python
    cells = [ImageCell("mnist_sample", sd, 0.0, "sgd", 0.1, 1e-2, "1e-5", seed) for sd in (0, 0.5) for seed in (0, 1)]
    experiment = ImageExperiment()
    rows = run_grid(cells, experiment, "runs/demo/results.csv", experiment.result_fields)
    ```
    """
    if not cells:
        raise ValueError("run_grid: the grid is empty; check the grid options (and the shard).")
    results = ResultsFile(path, _columns(cells, result_fields))
    done = results.completed_ids()
    pending = [cell for cell in cells if cell.cell_id not in done]
    if progress:
        print(f"grid: {len(cells)} cells, {len(cells) - len(pending)} already in {path}, {len(pending)} to run.")
        bar = keras.utils.Progbar(len(cells), unit_name="cell")
        bar.update(len(cells) - len(pending))
    for index, cell in enumerate(pending):
        if progress:
            print(f"\n[grid] cell {len(cells) - len(pending) + index + 1}/{len(cells)}: {cell.cell_id}", flush=True)
        outcome = experiment(cell)
        results.append({"cell_id": cell.cell_id, **dataclasses.asdict(cell), **outcome})
        if progress:
            print("[grid] overall progress:")
            bar.update(len(cells) - len(pending) + index + 1)
            print(flush=True)
    wanted = {cell.cell_id for cell in cells}
    return [row for row in read_results(path) if row["cell_id"] in wanted]


def merge_results(paths: Iterable[str], out_path: str) -> list:
    """Merges result CSVs (e.g. one per shard) into one, each cell once.

    Args:
        paths: The CSVs to merge; they must have the same columns.
        out_path: The merged CSV (overwritten atomically).

    Returns:
        The merged rows.

    Raises:
        ValueError: if no path is given or the files have different columns.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("merge_results: give at least one results CSV.")
    columns, rows, seen, duplicates = None, [], set(), 0
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if columns is None:
                columns = reader.fieldnames
            elif reader.fieldnames != columns:
                raise ValueError(f"merge_results: {path} has other columns than {paths[0]}; cannot merge them.")
            for row in reader:
                if row["cell_id"] in seen:
                    duplicates += 1
                    continue
                seen.add(row["cell_id"])
                rows.append(row)
    if duplicates:
        print(f"merge_results: {duplicates} cells appeared in several files; kept the first of each.")
    temporary = f"{out_path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, out_path)
    return read_results(out_path)


def summarize(rows: Sequence[dict], by: Sequence[str], metrics: Sequence[str]) -> list:
    """Mean and spread of `metrics` over the rows that share the `by` fields.

    The spread is the sample standard deviation (0 for a single row).

    Returns:
        One dict per group, in first-seen order: the `by` fields, `n`, and
        `<metric>_mean`, `<metric>_std` for each metric.
    """
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[field] for field in by), []).append(row)
    summary = []
    for key, members in groups.items():
        entry = dict(zip(by, key))
        entry["n"] = len(members)
        for metric in metrics:
            values = [float(member[metric]) for member in members]
            mean = sum(values) / len(values)
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean, spread
        summary.append(entry)
    return summary


def format_table(
    summary: Sequence[dict], by: Sequence[str], metric: str, scale: float = 100.0, number_format: str = ".2f"
) -> str:
    """A plain-text table: the `by` fields, then `metric` as mean ± spread (× `scale`, in `number_format`) and n."""
    header = [*by, metric, "n"]
    lines = [
        [
            *(f"{entry[field]:g}" if isinstance(entry[field], float) else str(entry[field]) for field in by),
            f"{scale * entry[f'{metric}_mean']:{number_format}} ± {scale * entry[f'{metric}_std']:{number_format}}",
            str(entry["n"]),
        ]
        for entry in summary
    ]
    widths = [max(len(text) for text in column) for column in zip(header, *lines)]
    rule = ["-" * width for width in widths]
    return "\n".join("  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in [header, rule, *lines])
