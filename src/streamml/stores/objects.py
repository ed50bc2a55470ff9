"""MinIO (S3) object storage through boto3, with botocore errors wrapped in streamml's own."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from streamml.config import MinioSettings
from streamml.errors import StreamMLError, TransientError

logger = logging.getLogger(__name__)


def s3_client(minio: MinioSettings, timeout: float = 10.0) -> Any:
    """A boto3 S3 client for MinIO (path-style addressing)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=minio.endpoint_url,
        aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key.get_secret_value(),
        region_name=minio.region,
        config=Config(
            connect_timeout=timeout,
            read_timeout=max(timeout, 60.0),
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


def s3_filesystem(minio: MinioSettings) -> Any:
    """A pyarrow filesystem on MinIO, for reading and writing parquet without Spark."""
    from pyarrow import fs

    return fs.S3FileSystem(
        access_key=minio.access_key,
        secret_key=minio.secret_key.get_secret_value(),
        endpoint_override=minio.endpoint_url,
        region=minio.region,
        scheme="http",
    )


class ObjectStore:
    """The few object operations the platform needs, on one bucket."""

    def __init__(self, minio: MinioSettings, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.client = client or s3_client(minio)
        self._endpoint = minio.endpoint_url

    def _call(self, what: str, fn: Any, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (EndpointConnectionError, ConnectionError) as exc:
            raise TransientError(f"MinIO at {self._endpoint} is unreachable ({what}): {exc}") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if missing_ok and error.get("Code") in ("NoSuchKey", "404"):
                return None
            # A server that is starting or overloaded (503 SlowDown, 500 InternalError) answers again later.
            if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500:
                raise TransientError(f"MinIO {what} failed: {exc}") from exc
            raise StreamMLError(f"MinIO refused {what} in bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"MinIO {what} failed: {exc}") from exc

    def keys(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"ContinuationToken": token} if token else {}
            page = self._call(f"list {prefix}", self.client.list_objects_v2, Prefix=prefix, **extra)
            for item in page.get("Contents", []):
                yield item["Key"]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def exists(self, key: str) -> bool:
        return any(k == key for k in self.keys(key))

    def put_file(self, path: Path, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"upload of {path} to s3://{self.bucket}/{key} failed: {exc}") from exc

    def get_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, key, str(path))
        except (BotoCoreError, ClientError) as exc:
            raise StreamMLError(f"download of s3://{self.bucket}/{key} failed: {exc}") from exc

    def put_bytes(self, key: str, body: bytes) -> None:
        self._call(f"put {key}", self.client.put_object, Key=key, Body=body)

    def get_bytes(self, key: str) -> bytes | None:
        """The object's content, or None when there is no such key."""

        def get(**kwargs: Any) -> bytes:
            return cast(bytes, self.client.get_object(**kwargs)["Body"].read())

        return cast(bytes | None, self._call(f"get {key}", get, missing_ok=True, Key=key))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (a missing key is no error); raise if any key could not be deleted."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            answer = self._call("delete", self.client.delete_objects, Delete={"Objects": batch, "Quiet": True})
            failed = (answer or {}).get("Errors") or []
            if failed:
                raise TransientError(f"MinIO kept {len(failed)} object(s) it was asked to delete: {failed[:3]}")

    def put_json(self, key: str, value: Any) -> None:
        self._call(f"put {key}", self.client.put_object, Key=key, Body=json.dumps(value, indent=2).encode())

    def get_json(self, key: str) -> Any:
        body = self._call(f"get {key}", self.client.get_object, Key=key)["Body"].read()
        return json.loads(body)

    def copy_prefix(self, src: str, dst: str) -> int:
        n = 0
        for key in list(self.keys(src)):
            target = dst + key[len(src) :]
            source = {"Bucket": self.bucket, "Key": key}
            self._call(f"copy {key}", self.client.copy_object, Key=target, CopySource=source)
            n += 1
        return n

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.keys(prefix))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(f"delete {prefix}", self.client.delete_objects, Delete={"Objects": batch, "Quiet": True})
        return len(keys)
