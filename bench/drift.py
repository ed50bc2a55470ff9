"""What the drift monitor costs the metrics aggregator: :meth:`DriftWindow.add` per prediction and :func:`assess`
per snapshot (every 2 s), on synthetic rows of the 65 features (one-hot genres, counts that are often 0, the rest
continuous: the continuous ones get the most bins, the worst case for the binning). No service is needed::

    python -m bench.drift --window 5000 --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.table import Table

from bench.harness import console
from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.models import profile
from streamml.streaming.drift import DriftWindow, assess


def population(rng: np.random.Generator, rows: int) -> np.ndarray:
    x = rng.normal(size=(rows, N_FEATURES))
    for i, name in enumerate(FEATURE_NAMES):
        if name.startswith("genre_"):
            x[:, i] = rng.random(rows) < 0.25
        elif name.endswith("_count"):
            x[:, i] = rng.poisson(4, rows) * (rng.random(rows) < 0.7)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=5000, help="Predictions the window holds.")
    parser.add_argument("--rounds", type=int, default=20, help="Timed assessments.")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    reference = profile.build(population(rng, 50_000), FEATURE_NAMES, rng.random(50_000), rng.random(50_000) < 0.55)
    rows = [tuple(r) for r in population(rng, args.window).tolist()]  # what Prediction.features is: floats
    scores = rng.random(args.window).tolist()
    window = DriftWindow(args.window)

    add_seconds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for row, score in zip(rows, scores, strict=True):
            window.add(row, score)
            window.add_outcome(1, score)
        add_seconds.append((time.perf_counter() - start) / args.window)

    assess_seconds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        report = assess(window, reference, reference_version="bench")
        assess_seconds.append(time.perf_counter() - start)

    table = Table(title=f"Drift monitor, {N_FEATURES} features, window {args.window:,}, {args.rounds} rounds")
    table.add_column("step")
    table.add_column("median", justify="right")
    table.add_column("min-max", justify="right")
    table.add_row(
        "add + add_outcome (per prediction)",
        f"{statistics.median(add_seconds) * 1e6:.2f} µs",
        f"{min(add_seconds) * 1e6:.2f}-{max(add_seconds) * 1e6:.2f} µs",
    )
    table.add_row(
        "assess (per snapshot)",
        f"{statistics.median(assess_seconds) * 1e3:.2f} ms",
        f"{min(assess_seconds) * 1e3:.2f}-{max(assess_seconds) * 1e3:.2f} ms",
    )
    console.print(table)
    console.print(f"report JSON: {len(report.model_dump_json()):,} bytes")


if __name__ == "__main__":
    main()
