"""Ingest: MovieLens from a directory (or GroupLens) into MinIO ``raw/movielens/<snapshot>/``, all or nothing.

The files are validated first, uploaded under a temporary prefix, and promoted to the snapshot prefix only when every
file is there; a ``_SUCCESS`` manifest written last marks the snapshot complete. The snapshot id is a content hash, so
ingesting the same files again is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from streamml import names
from streamml.config import Settings
from streamml.errors import ConfigError, DataValidationError
from streamml.stores.objects import ObjectStore

logger = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
RAW_PREFIX = "movielens"
FILES = (names.RATINGS_FILE, names.MOVIES_FILE)


@dataclass(frozen=True)
class Snapshot:
    snapshot: str
    ratings: int
    movies: int
    users: int
    min_timestamp: int
    max_timestamp: int
    md5: dict[str, str]
    sizes: dict[str, int]

    @property
    def prefix(self) -> str:
        return f"{RAW_PREFIX}/{self.snapshot}/"


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_movielens(
    cache_dir: Path, url: str = GROUPLENS_URL, on_progress: Callable[[int, int | None], None] | None = None
) -> Path:
    """Download and unpack ml-latest-small into the cache, checking the zip against GroupLens' published md5;
    ``on_progress(bytes, total)`` follows the download. Offline it fails within seconds (a 10 s connect timeout)."""
    target = cache_dir / "movielens"
    unpacked = target / "ml-latest-small"
    if (unpacked / names.RATINGS_FILE).exists():
        return unpacked
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "ml-latest-small.zip"
    try:
        with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True) as http:
            expected = http.get(url + ".md5").raise_for_status().text.split()[0]
            with http.stream("GET", url) as resp, archive.open("wb") as out:
                resp.raise_for_status()
                total = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
                for chunk in resp.iter_bytes(1 << 16):
                    out.write(chunk)
                    if on_progress:
                        on_progress(resp.num_bytes_downloaded, total)
    except httpx.HTTPError as exc:
        archive.unlink(missing_ok=True)
        raise ConfigError(
            f"could not download {url} ({exc}); set STREAMML_MOVIELENS_DIR to a local MovieLens directory"
        ) from exc
    if md5_of(archive) != expected:
        archive.unlink()
        raise DataValidationError(f"{archive}: md5 does not match {url}.md5; the download is corrupt")
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)  # noqa: S202 - GroupLens archive, checksum verified above
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"{archive}: not a valid zip archive ({exc})") from exc
    return unpacked


def source_dir(settings: Settings, on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Where MovieLens is read from: STREAMML_MOVIELENS_DIR, else a download into the cache."""
    if settings.movielens_dir is not None:
        directory = settings.movielens_dir.expanduser()
        if not directory.is_dir():
            raise ConfigError(
                f"STREAMML_MOVIELENS_DIR={directory} is not a directory; point it at an ml-latest-small directory "
                "(ratings.csv, movies.csv) or unset it to download the data set"
            )
        return directory
    return download_movielens(settings.cache_dir.expanduser(), on_progress=on_progress)


def describe(directory: Path) -> Snapshot:
    """Load and validate the files; the snapshot id hashes their content."""
    from streamml.data import movielens  # pandas: imported only here, so resolving a data set stays quick

    ratings, movies = movielens.load(directory)
    md5 = {name: md5_of(directory / name) for name in FILES}
    snapshot = hashlib.sha256("".join(md5[n] for n in FILES).encode()).hexdigest()[:12]
    return Snapshot(
        snapshot=snapshot,
        ratings=len(ratings),
        movies=len(movies),
        users=int(ratings["userId"].nunique()),
        min_timestamp=int(ratings["timestamp"].min()),
        max_timestamp=int(ratings["timestamp"].max()),
        md5=md5,
        sizes={name: (directory / name).stat().st_size for name in FILES},
    )


def ingest(settings: Settings, directory: Path | None = None) -> Snapshot:
    """Validate MovieLens and upload it as a complete snapshot (idempotent); return what was ingested."""
    directory = directory or source_dir(settings)
    snap = describe(directory)
    store = ObjectStore(settings.minio, names.BUCKET_RAW)
    done_key = snap.prefix + "_SUCCESS"
    if store.exists(done_key):
        logger.info("snapshot=%s already ingested", snap.snapshot)
        return snap
    staging = f"{RAW_PREFIX}/_incoming/{snap.snapshot}-{uuid.uuid4().hex[:8]}/"
    try:
        for name in FILES:
            store.put_file(directory / name, staging + name)
        store.delete_prefix(snap.prefix)  # a crashed earlier promotion left no _SUCCESS; start clean
        store.copy_prefix(staging, snap.prefix)
        store.put_json(done_key, asdict(snap))
    finally:
        store.delete_prefix(staging)
    logger.info(
        "ingested snapshot=%s ratings=%d into s3://%s/%s", snap.snapshot, snap.ratings, store.bucket, snap.prefix
    )
    return snap


def verify(settings: Settings, snapshot: str) -> Snapshot:
    """Check that a snapshot in MinIO is complete and intact (every file present with its recorded md5)."""
    store = ObjectStore(settings.minio, names.BUCKET_RAW)
    prefix = f"{RAW_PREFIX}/{snapshot}/"
    if not store.exists(prefix + "_SUCCESS"):
        raise DataValidationError(f"s3://{store.bucket}/{prefix}: no complete snapshot {snapshot} (no _SUCCESS)")
    snap = Snapshot(**store.get_json(prefix + "_SUCCESS"))
    for name in FILES:
        head = store.client.head_object(Bucket=store.bucket, Key=prefix + name)
        etag = head["ETag"].strip('"')
        # A multipart upload's ETag is not the file's md5 ("<hash>-<parts>"); then the size must match.
        intact = head["ContentLength"] == snap.sizes[name] if "-" in etag else etag == snap.md5[name]
        if not intact:
            raise DataValidationError(f"s3://{store.bucket}/{prefix}{name}: content does not match its manifest md5")
    return snap


def list_snapshots(settings: Settings) -> list[dict[str, Any]]:
    """Every complete snapshot in MinIO (those with a ``_SUCCESS`` manifest) with its row counts."""
    store = ObjectStore(settings.minio, names.BUCKET_RAW)
    done = [key for key in store.keys(f"{RAW_PREFIX}/") if key.endswith("/_SUCCESS") and "/_incoming/" not in key]
    return [{"location": f"s3://{store.bucket}/{key.removesuffix('_SUCCESS')}", **store.get_json(key)} for key in done]
