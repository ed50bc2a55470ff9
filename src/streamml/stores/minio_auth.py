"""MinIO's users: each program that reaches MinIO itself signs in as its own user with a bucket policy, not the root.

- ``mlflow`` (the tracking server's artifact store): the mlflow bucket;
- ``airflow`` (the DAGs' tasks and their Spark jobs): the raw and features buckets;
- ``archive`` (the feedback archive): ``features/online/`` only.

The other programs reach artifacts through MLflow's proxy and never MinIO. The root user (``STREAMML_MINIO__*`` in
.env) stays with the CLI, the tests and :func:`ensure_accounts`, which runs at every ``stack up`` (Compose: the
minio-init job): it creates the buckets, sets each user's secret key from the settings (so a key rotated in .env
takes effect at once) and attaches its policy.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from streamml import names
from streamml.config import MinioSettings
from streamml.errors import TransientError

logger = logging.getLogger(__name__)

OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucketMultipartUploads")  # and s3:ListBucket, of a prefix

# account -> (bucket, key prefix) pairs it may list, read, write and delete
GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "mlflow": ((names.BUCKET_MLFLOW, ""),),
    "airflow": ((names.BUCKET_RAW, ""), (names.BUCKET_FEATURES, "")),
    "archive": ((names.BUCKET_FEATURES, names.ARCHIVE_PREFIX),),
}
assert set(GRANTS) == set(names.MINIO_PROGRAM_ACCOUNTS), "every MinIO user has its grants"  # noqa: S101


def policy_name(account: str) -> str:
    return f"streamml-{account}"


def policy(account: str) -> dict[str, Any]:
    """The IAM policy of ``account``: its buckets (or key prefixes of them), nothing else."""
    statements: list[dict[str, Any]] = []
    for bucket, prefix in GRANTS[account]:
        arn = f"arn:aws:s3:::{bucket}"
        listing: dict[str, Any] = {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn]}
        if prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
        statements += [
            listing,
            {"Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": [arn]},
            {"Effect": "Allow", "Action": list(OBJECT_ACTIONS), "Resource": [f"{arn}/{prefix}*"]},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def ensure_accounts(minio: MinioSettings) -> None:
    """Create the platform buckets, and make MinIO's users and policies those of the settings and :data:`GRANTS`
    (idempotent). ``minio`` is the root's settings with every program's secret key."""
    from minio import MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import MinioAdminException

    from streamml.stores.objects import s3_client

    minio.require_programs()
    s3 = s3_client(minio)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in names.BUCKETS:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
    admin = MinioAdmin(
        endpoint=f"{minio.host}:{minio.port}",
        credentials=StaticProvider(minio.access_key, minio.secret_key.get_secret_value()),
        secure=False,
    )
    try:
        for account in names.MINIO_PROGRAM_ACCOUNTS:
            admin.policy_add(policy_name(account), policy=policy(account))
            admin.user_add(account, minio.program_secret_keys[account].get_secret_value())
            attached = json.loads(admin.user_info(account)).get("policyName", "")
            if policy_name(account) not in attached.split(","):
                admin.attach_policy([policy_name(account)], user=account)
    except MinioAdminException as exc:
        raise TransientError(f"could not set MinIO's users at {minio.endpoint_url}: {exc}") from exc
    logger.info("minio users=%s", ",".join(names.MINIO_PROGRAM_ACCOUNTS))
