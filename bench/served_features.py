"""What the served-feature log costs the scorer: every prediction carries its 33 feature values and the global sums
it used. Measured on the scorer's own per-prediction work, in one process, alternating the two variants round by round
so machine drift hits both:

- served log: ``Prediction(...)`` with ``features`` and ``globals_used`` (validated), then ``encode()`` (the bytes
  that go to ``predictions.v1`` and ``pred:{id}``), as the scorer does;
- without: the same predictions built and encoded without those two fields (what a prediction carried before).

It also reports the bytes per prediction, which the broker and Redis carry. Feature vectors come from the active
version's stream rows (so the float formatting cost is realistic)::

    python -m bench.served_features --predictions 20000 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from pydantic import BaseModel, create_model
from rich.table import Table

from bench.harness import console
from streamml.config import Settings
from streamml.features import spec
from streamml.features.batch import read_part
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client
from streamml.streaming.messages import Message, Prediction

# The prediction as it was before the served-feature log: the same fields and bounds, without features and globals.
PredictionWithoutLog = create_model(
    "PredictionWithoutLog",
    __base__=Message,
    **{  # type: ignore[call-overload]
        name: (info.annotation, info)
        for name, info in Prediction.model_fields.items()
        if name not in ("features", "globals_used", "schema_version")
    },
)


def build(cls: type[BaseModel], rows: np.ndarray, log: bool) -> list[bytes]:
    out = []
    for i, row in enumerate(rows):
        fields: dict[str, object] = {
            "request_id": f"bench-{i}", "user_id": 1 + i % 600, "movie_id": 1 + i % 9000, "score": 0.5, "label": 1,
            "model_name": "movielens-like", "model_version": "1", "feature_version": 1, "cold_start": False,
            "event_ts": 1_500_000_000, "sent_at": 1_700_000_000.0, "scored_at": 1_700_000_000.01,
        }  # fmt: skip
        if log:
            fields |= {"features": tuple(row.tolist()), "globals_used": (80_000, 280_000.5, 39_000)}
        out.append(cls(**fields).model_dump_json().encode())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    settings = Settings()
    version = RedisFeatureStore(redis_client(settings.redis)).current_version() or 1
    table = read_part(settings, version, "stream", columns=list(spec.FEATURE_NAMES)).to_pandas()
    rows = np.resize(table.to_numpy(dtype=np.float64), (args.predictions, spec.N_FEATURES))
    bare = PredictionWithoutLog
    rates: dict[str, list[float]] = {"served log": [], "without": []}
    sizes: dict[str, float] = {}
    build(Prediction, rows[:500], True)  # warm-up
    build(bare, rows[:500], False)
    for _ in range(args.rounds):
        for name, cls, log in (("served log", Prediction, True), ("without", bare, False)):
            start = time.perf_counter()
            encoded = build(cls, rows, log)
            rates[name].append(len(rows) / (time.perf_counter() - start))
            sizes[name] = sum(map(len, encoded)) / len(encoded)
    out = Table(title=f"served-feature log: {args.predictions:,} predictions x {args.rounds} rounds, one process")
    for col in ("variant", "predictions/s min", "median", "max", "bytes per prediction"):
        out.add_column(col, justify="left" if col == "variant" else "right")
    for name, values in rates.items():
        out.add_row(name, f"{min(values):,.0f}", f"{statistics.median(values):,.0f}", f"{max(values):,.0f}",
                    f"{sizes[name]:,.0f}")  # fmt: skip
    console.print(out)
    ratio = [a / b for a, b in zip(rates["served log"], rates["without"], strict=True)]
    console.print(
        f"served log / without, round by round: min {min(ratio):.3f} median {statistics.median(ratio):.3f} "
        f"max {max(ratio):.3f}"
    )


if __name__ == "__main__":
    main()
