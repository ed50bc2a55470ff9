"""What a retrain on drifted feedback gains over the champion, offline, on the closed loop's scenario: ml-latest-small
split at 0.8, the stream period's Drama ratings turned over from its first request (``5.5 - r``, as
``streamml replay --drift-from 0 --drift-kind genre``), point-in-time features by spec replay. The champion trains on
the history; the challenger on the history plus the first ``N`` stream ratings, either drifted (what the archive of
a deploy's first drifted replay holds) or drifted up to ``N`` and then undrifted to the middle of the stream (what the
archive holds after earlier undrifted replays of the stream period: the newest copy of each rating wins, so the
ratings the drifted replay has not reached yet are there as they were). Both are scored on windows of drifted requests
from ``N + 6000`` on (the gate's evidence comes after the retrain), and the table gives the challenger's AUC
minus the champion's. Needs ``STREAMML_MOVIELENS_DIR``; about 2 minutes::

    python -m bench.retrain_gain --feedback 3000,6000
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
from rich.table import Table

from bench.harness import console
from streamml.data import movielens
from streamml.features import spec
from streamml.models.registry import DEFAULT_MARGIN

GAP = 6000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feedback", default="3000,6000", help="drifted ratings the challenger trains on (N)")
    parser.add_argument("--windows", default="1000,2000", help="requests per evaluation window (the gate's evidence)")
    args = parser.parse_args()
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    from streamml.models.train import HGBParams

    threadpool_limits(1)
    ratings, movies = movielens.load(os.environ["STREAMML_MOVIELENS_DIR"])
    history, stream, _ = movielens.time_split(ratings, 0.8)
    drama = stream["movieId"].isin(set(movies[movies["genres"].str.contains("Drama")]["movieId"])).to_numpy()
    drifted = stream.copy()
    drifted.loc[drama, "rating"] = 5.5 - drifted.loc[drama, "rating"]

    def features(*parts: pd.DataFrame) -> list[np.ndarray]:
        state = spec.FeatureState.from_movies(movies)
        return [spec.point_in_time_features(state, part) for part in parts]

    def labels(frame: pd.DataFrame) -> np.ndarray:
        return (frame["rating"].to_numpy() >= spec.LIKE_THRESHOLD).astype(np.int64)

    def fit(x: np.ndarray, y: np.ndarray) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(**HGBParams().model_dump(), random_state=0).fit(x, y)

    x_history, x_drifted = features(history, drifted)
    y_history, y_drifted = labels(history), labels(drifted)
    champion = fit(x_history, y_history)
    table = Table("archive", "N", "requests", "windows", "AUC gain mean", "sd", "min", f"> margin {DEFAULT_MARGIN}")
    for n in (int(v) for v in args.feedback.split(",")):
        mixed = pd.concat([drifted.iloc[:n], stream.iloc[n : len(stream) // 2]], ignore_index=True)
        for archive, train in (("drifted only", drifted.iloc[:n]), ("with undrifted copies", mixed)):
            x_train = features(history, train)[1]
            challenger = fit(np.vstack([x_history, x_train]), np.concatenate([y_history, labels(train)]))
            for window in (int(v) for v in args.windows.split(",")):
                gains = []
                for start in range(n + GAP, len(y_drifted) - window, window):
                    y, x = y_drifted[start : start + window], x_drifted[start : start + window]
                    ours = roc_auc_score(y, champion.predict_proba(x)[:, 1])
                    gains.append(roc_auc_score(y, challenger.predict_proba(x)[:, 1]) - ours)
                g = np.array(gains)
                table.add_row(
                    archive, f"{n:,}", f"{window:,}", str(len(g)), f"{g.mean():+.4f}", f"{g.std():.4f}",
                    f"{g.min():+.4f}", f"{(g > DEFAULT_MARGIN).mean():.0%}",
                )  # fmt: skip
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
