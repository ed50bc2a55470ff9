"""Model integrity: a registered version loads only if its files are the ones streamml's training registered.

Loading a model unpickles it, so a version registered by anyone else (MLflow's UI, its REST API, a stolen token) would
run its code inside the scorer, the API and the gate. Registration signs the version: an HMAC-SHA256, keyed with
``STREAMML_MLFLOW__SIGNING_KEY`` (generated into ``.env``, never stored in MLflow), over the digest of every file of
the model's artifacts, kept in the version's tag ``streamml.signature``. The platform's loaders download the
version, check the signature over the downloaded files, and only then unpickle those same files; a version without
a valid signature is refused with :class:`ModelIntegrityError` (the scorer keeps serving the model it has).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamml.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

SIGNATURE_TAG = "streamml.signature"
DIGEST_TAG = "streamml.digest"  # the plain SHA-256 beside it, for people comparing copies; never trusted alone
IGNORED_FILES = frozenset({"registered_model_meta"})  # written by MLflow into each download of a registered version


class ModelIntegrityError(ModelUnavailableError):
    """A registered version whose files carry no valid streamml signature: never unpickled."""


def artifact_digest(directory: Path) -> str:
    """SHA-256 over every file under ``directory``: its relative path and its content's own SHA-256, in path order
    (a renamed, added, removed or changed file changes it)."""
    outer = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in IGNORED_FILES)
    for path in files:
        inner = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                inner.update(block)
        outer.update(path.relative_to(directory).as_posix().encode() + b"\0" + inner.digest())
    return outer.hexdigest()


def signature(digest: str, key: str) -> str:
    return hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()


def _download(tracking_uri: str, model_name: str, version: str | int, into: Path) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        return Path(mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}", dst_path=str(into)))
    except (MlflowException, OSError) as exc:
        raise ModelUnavailableError(f"cannot download model {model_name} version {version}: {exc}") from exc


def sign_version(client: Any, tracking_uri: str, model_name: str, version: str | int, key: str) -> str:
    """Sign a version just registered by streamml's training (its files as the registry serves them); return the
    digest."""
    with tempfile.TemporaryDirectory(prefix="streamml-sign-") as tmp:
        digest = artifact_digest(_download(tracking_uri, model_name, version, Path(tmp)))
    client.set_model_version_tag(model_name, str(version), DIGEST_TAG, digest)
    client.set_model_version_tag(model_name, str(version), SIGNATURE_TAG, signature(digest, key))
    logger.info("signed model=%s version=%s digest=%s", model_name, version, digest)
    return digest


@contextmanager
def verified_copy(tracking_uri: str, model_name: str, version: str | int, key: str | None) -> Iterator[Path]:
    """A local copy of a registered version's files whose signature holds, for as long as the ``with`` lasts; raises
    :class:`ModelIntegrityError` otherwise. Load from this copy: nothing is re-read from the registry."""
    from mlflow.exceptions import MlflowException

    from streamml.stores.mlflow_client import mlflow_client

    where = f"model {model_name} version {version}"
    if not key:
        raise ModelIntegrityError(f"refusing {where}: no signing key configured (STREAMML_MLFLOW__SIGNING_KEY)")
    try:
        tags = mlflow_client(tracking_uri).get_model_version(model_name, str(version)).tags or {}
    except MlflowException as exc:  # the registry did not answer, or has no such version: nothing to check
        raise ModelUnavailableError(f"cannot read {where}: {exc}") from exc
    claimed = tags.get(SIGNATURE_TAG)
    if not claimed:
        raise ModelIntegrityError(f"refusing {where}: it carries no {SIGNATURE_TAG} (not registered by streamml)")
    with tempfile.TemporaryDirectory(prefix="streamml-model-") as tmp:
        local = _download(tracking_uri, model_name, version, Path(tmp))
        digest = artifact_digest(local)
        if not hmac.compare_digest(signature(digest, key), claimed):
            raise ModelIntegrityError(
                f"refusing {where}: its files (sha256 {digest[:16]}...) do not match its signature; "
                "they were changed or signed with another key"
            )
        yield local


def load_verified(tracking_uri: str, model_name: str, version: str | int, key: str | None) -> Any:
    """The :class:`~streamml.models.pyfunc.LoadedModel` of a registered version whose signature holds; raises
    :class:`ModelIntegrityError` before anything is unpickled otherwise."""
    from streamml.models.pyfunc import load_model

    with verified_copy(tracking_uri, model_name, version, key) as local:
        return load_model(str(local))
