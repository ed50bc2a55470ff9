"""The offline features, computed where the data is: every user's ratings replayed through the streaming definition.

The sequential families (:data:`streamml.features.spec.SEQUENTIAL_FEATURES`) depend on the order ratings are
applied in (timestamp, userId, movieId), so no window expresses them. What couples one user's replay to the others
is only a handful of sums: a rating's residuals are taken against its movie's and the global counts and sums just
before it is applied, and a feature row reads its movie's sums, residual total and first rating and the global sums
strictly before the rating's second. Spark computes those per rating with windows
(:func:`streamml.features.spark.replay_inputs`; sums of ratings are multiples of 0.5 and exact in any order, and a
movie's residual total is a running sum in replay order, the same left fold as the updater's). This module is the
other half, run by Spark's Python workers over partitions sorted by (userId, timestamp, movieId): it replays each
user's state against those movie and global states with :mod:`._replay_kernel`, a compiled copy of the updater's
:func:`~streamml.features.spec.features_from_states` and :func:`~streamml.features.spec.apply_rating` whose every
feature, and the user's state as of the cutoff, equals the Python definition's bit for bit (the parity tests assert
it). The Python replay ran about 14,500 ratings per second per core; the kernel runs about 2.4 million, so Spark's
own shuffles and the Arrow transfer are what remain. Nothing passes through the driver.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from streamml.features import _replay_kernel as kernel
from streamml.features import snapshot_rows, spec

KEY_COLUMNS: tuple[str, ...] = ("userId", "movieId", "rating", "timestamp")
"""Columns of a ratings frame, passed through to the features frame ahead of ``label`` and the features."""
SNAPSHOT_PREFIX = "snapshot_"
"""Prefix of the user-state columns of a replayed row: set on each user's last history row, null on every other."""
RESIDUAL_AFTER = "movie_residual_after"
"""The movie's residual total just after the row is applied (the movie snapshot takes it at its last history row)."""

NONE = -1
"""``year`` and ``m_first`` of a movie without one (both are never negative otherwise)."""
GENRE_MASK = "genre_mask"
"""The movie's genres as bits (bit ``g`` for genre index ``g``)."""
GLOBAL_AT = ("g_count", "g_total", "g_likes")
"""The global sums strictly before the rating's second."""
GLOBAL_BEFORE = ("ga_count", "ga_total", "ga_likes")
"""The global sums just before the rating is applied."""
INPUT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys((*KEY_COLUMNS, *kernel.INT_INPUTS, *kernel.FLOAT_INPUTS, RESIDUAL_AFTER))
)
"""What :func:`replay` reads from each row (:func:`streamml.features.spark.replay_inputs` writes it)."""


FEATURE_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, spec.LABEL, *spec.FEATURE_NAMES)
"""The columns of a replayed row that the history and stream parts keep."""
STATE_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS, RESIDUAL_AFTER, *(SNAPSHOT_PREFIX + name for name in snapshot_rows.USER_STATE_SCHEMA)
)  # fmt: skip
"""The columns of a replayed row that the user and movie snapshots read."""


def output_schema(columns: tuple[str, ...] | None = None) -> str:
    """The Spark schema of :func:`replay`'s rows: all of them, or only ``columns``."""
    kinds = {
        "userId": "long", "movieId": "long", "rating": "double", "timestamp": "long", spec.LABEL: "int",
        **dict.fromkeys(spec.FEATURE_NAMES, "double"), RESIDUAL_AFTER: "double",
        **{SNAPSHOT_PREFIX + name: kind for name, kind in snapshot_rows.USER_STATE_SCHEMA.items()},
    }  # fmt: skip
    return ", ".join(f"{name} {kind}" for name, kind in kinds.items() if columns is None or name in columns)


def replay(batches: Iterator[pd.DataFrame], cutoff: int) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: one partition's rows (:data:`INPUT_COLUMNS`), every user's rows together and sorted by
    (timestamp, movieId), in; their features, label and the user snapshots as of ``cutoff`` out.

    A user's rows may span Arrow batches: the last (user, second) of each batch waits for the next one, so a second's
    ratings are always featurised together before any of them is applied, and the row after each chunk is known.
    """
    users = _UserReplay(cutoff)
    carry: pd.DataFrame | None = None
    for batch in batches:
        if carry is not None:
            batch = pd.concat([carry, batch], ignore_index=True)
        user_ids = batch["userId"].to_numpy()
        seconds = batch["timestamp"].to_numpy()
        earlier = np.flatnonzero((user_ids != user_ids[-1]) | (seconds != seconds[-1]))
        if not len(earlier):  # one (user, second) fills the batch
            carry = batch
            continue
        split = int(earlier[-1]) + 1
        carry = batch.iloc[split:].reset_index(drop=True)
        yield users.run(batch.iloc[:split], (1, int(user_ids[split]), int(seconds[split])))
    if carry is not None and len(carry):
        yield users.run(carry, (0, 0, 0))


FEATURE_PARTS = ("history", "stream")
"""The parts of a feature version holding :data:`FEATURE_COLUMNS`: the rows before the cutoff, and the rest."""
ROW_GROUP_ROWS = 32_768


def replay_to_parquet(
    batches: Iterator[pd.DataFrame], cutoff: int, filesystem: Any, base: str, row_group_rows: int = ROW_GROUP_ROWS
) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body of the feature job: :func:`replay`, writing each row's :data:`FEATURE_COLUMNS` itself
    to ``{base}/history/`` or ``{base}/stream/`` on ``filesystem`` (a pyarrow filesystem: MinIO's, ``base`` being
    ``bucket/prefix``; on a local one both directories must exist) and handing Spark only the
    :data:`STATE_COLUMNS` the snapshots need.

    Spark's parquet writer converted every Arrow batch back to rows; pyarrow writes the frames the replay already
    holds (25M ratings: 7:14-7:45 instead of 14:42-15:23, docs/benchmarks.md). A task writes its rows to local files and
    uploads each once, whole, as ``part-{partition}.parquet``: a file in MinIO is always complete, and a retried
    task replaces its own.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import fs
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        raise RuntimeError("replay_to_parquet runs only inside a Spark task")
    name = f"part-{context.partitionId():05d}.parquet"
    kinds = {"long": pa.int64(), "double": pa.float64(), "int": pa.int32()}
    schema = pa.schema([(n, kinds[k]) for n, k in (c.split(" ") for c in output_schema(FEATURE_COLUMNS).split(", "))])
    with tempfile.TemporaryDirectory(prefix="streamml-replay-") as local:
        files = {part: _RowGroups(os.path.join(local, part), schema, row_group_rows) for part in FEATURE_PARTS}
        for frame in replay(batches, cutoff):
            table = pa.Table.from_pandas(frame[list(FEATURE_COLUMNS)], schema=schema, preserve_index=False)
            before = pa.array(frame["timestamp"].to_numpy() < cutoff)
            files["history"].write(table.filter(before))
            files["stream"].write(table.filter(pc.invert(before)))
            yield frame[list(STATE_COLUMNS)]
        for part, rows in files.items():
            rows.close()
            target = f"{base}/{part}/{name}"
            fs.copy_files(rows.path, target, source_filesystem=fs.LocalFileSystem(), destination_filesystem=filesystem)


class _RowGroups:
    """A local parquet file written in row groups of at least ``rows`` rows but the last (the replay's frames are
    Arrow batches of 10,000 rows or fewer)."""

    def __init__(self, path: str, schema: Any, rows: int) -> None:
        import pyarrow.parquet as pq

        self.path = path
        # No dictionary pages: 69 columns of mostly distinct doubles made a writer try and drop one for each (3x
        # slower in Spark's writer, files 4% smaller).
        self._writer = pq.ParquetWriter(path, schema, use_dictionary=False, compression="snappy")
        self._pending: list[Any] = []
        self._rows = 0
        self._group = rows

    def write(self, table: Any) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self._group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self._rows)
        self._pending, self._rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


class _UserReplay:
    """The replay state of one partition: the current user and its state (:mod:`._replay_kernel`'s layout)."""

    def __init__(self, cutoff: int) -> None:
        self.cutoff = cutoff
        self.current = np.zeros(2, dtype=np.int64)
        self.ints = np.zeros(kernel.N_INTS, dtype=np.int64)
        self.floats = np.zeros(kernel.N_FLOATS, dtype=np.float64)

    def run(self, chunk: pd.DataFrame, following: tuple[int, int, int]) -> pd.DataFrame:
        """Features of ``chunk`` (whole seconds of whole or continued users); ``following`` is (1, user, second) of
        the row that follows it, (0, 0, 0) at the end of the partition."""
        size = len(chunk)
        counts = np.column_stack([chunk[name].to_numpy(np.int64) for name in kernel.INT_INPUTS])
        sums = np.column_stack([chunk[name].to_numpy(np.float64) for name in kernel.FLOAT_INPUTS])
        out = np.empty((size, spec.N_FEATURES), dtype=np.float64)
        users = int(np.count_nonzero(np.diff(counts[:, kernel.USER]))) + 1
        rows = np.empty(users, dtype=np.int64)
        ints = np.empty((users, kernel.N_INTS), dtype=np.int64)
        floats = np.empty((users, kernel.N_FLOATS), dtype=np.float64)
        snapshots = kernel.replay(
            counts, sums, np.array(following, dtype=np.int64), self.cutoff, self.current, self.ints, self.floats,
            out, rows, ints, floats,
        )  # fmt: skip
        frame = chunk[list(KEY_COLUMNS)].reset_index(drop=True)
        frame[spec.LABEL] = (chunk["rating"].to_numpy() >= spec.LIKE_THRESHOLD).astype(np.int32)
        frame = pd.concat([frame, pd.DataFrame(out, columns=list(spec.FEATURE_NAMES))], axis=1)
        frame[RESIDUAL_AFTER] = chunk[RESIDUAL_AFTER].to_numpy()
        rows = rows[:snapshots]
        arrays = {"int": ints[:snapshots], "float": floats[:snapshots]}
        for name in snapshot_rows.USER_STATE_SCHEMA:
            kind, at = kernel.USER_FIELDS[name]
            column = np.full(size, None, dtype=object)
            for row, value in zip(rows.tolist(), arrays[kind][:, at].tolist(), strict=True):
                column[row] = value  # a list for the per-genre and moving-average fields
            frame[SNAPSHOT_PREFIX + name] = column
        return frame
