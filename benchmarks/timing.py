"""Side-by-side timing helpers shared by the benchmark scripts.

Every benchmark times its candidates *interleaved* in one process (round r
times each candidate once), so drifts of the machine hit all of them alike,
and reports medians and ratios against a baseline. Nothing here asserts a
time: benchmarks print, tests assert correctness.
"""

import statistics
import time
from typing import Callable
from typing import Dict


def interleaved_medians(candidates: Dict[str, Callable[[], None]], rounds: int, warmup: int = 2) -> Dict[str, float]:
    """Median seconds per call of each candidate, timed round-robin.

    Args:
        candidates: name -> a function that runs one measured unit of work
            and blocks until its result is ready.
        rounds: how many timed calls of each candidate.
        warmup: untimed calls of each candidate first (compilation).

    Returns:
        name -> median seconds.
    """
    for function in candidates.values():
        for _ in range(warmup):
            function()
    samples = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, function in candidates.items():
            start = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def ratio_table(medians: Dict[str, float], baseline: str, title: str) -> str:
    """A Markdown table of medians (ms) and ratios against `baseline`."""
    lines = [f"### {title}", "", "| candidate | median (ms) | ratio |", "|---|---:|---:|"]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {seconds * 1e3:.2f} | {seconds / medians[baseline]:.2f}× |")
    return "\n".join(lines)
