"""How fast the default model trains with one OpenMP thread or two, on a quiet machine and beside a busy process
(what the serving platform is to a retrain: scorer, Kafka, aggregator), on a feature version's real training rows.
The variants alternate within each repeat, so drifting load hits them alike::

    python -m bench.fit_threads --feature-version 4 --max-iter 300 --repeats 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.table import Table
from threadpoolctl import threadpool_limits

from bench.harness import console
from streamml.config import get_settings
from streamml.models.dataset import load_dataset
from streamml.models.train import HGBParams, ModelConfig, fit


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy(on: bool) -> Iterator[None]:
    """One process spinning on a core (none when ``on`` is false)."""
    process = mp.get_context("spawn").Process(target=_spin, daemon=True) if on else None
    if process is not None:
        process.start()
    try:
        yield
    finally:
        if process is not None:
            process.terminate()
            process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-version", type=int, required=True, help="Whose training rows to fit.")
    parser.add_argument("--max-iter", type=int, default=300, help="Boosting iterations (the default model: 1500).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dataset = load_dataset(get_settings(), args.feature_version)
    config = ModelConfig(hgb=HGBParams(max_iter=args.max_iter))
    rows = dataset.train_features.shape
    seconds: dict[tuple[bool, int], list[float]] = {}
    for _ in range(args.repeats):
        for loaded in (False, True):
            with busy(loaded):
                for threads in (1, 2):
                    start = time.perf_counter()
                    with threadpool_limits(threads, user_api="openmp"):
                        fit(config, dataset.train_features, dataset.train_labels)
                    seconds.setdefault((loaded, threads), []).append(time.perf_counter() - start)

    table = Table(
        title=f"HGB fit, {rows[0]:,} rows x {rows[1]} features, {args.max_iter} iterations, {args.repeats} repeats"
    )
    for column in ("machine", "OpenMP threads", "median s", "min-max s", "vs 1 thread"):
        table.add_column(column)
    for loaded in (False, True):
        one = statistics.median(seconds[(loaded, 1)])
        for threads in (1, 2):
            s = seconds[(loaded, threads)]
            table.add_row(
                "one core busy" if loaded else "quiet",
                str(threads),
                f"{statistics.median(s):.1f}",
                f"{min(s):.1f}-{max(s):.1f}",
                f"{one / statistics.median(s):.2f}x",
            )
    console.print(table)


if __name__ == "__main__":
    main()
