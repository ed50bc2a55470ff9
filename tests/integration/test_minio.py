from __future__ import annotations

from collections.abc import Callable

import pytest

from streamml import names
from streamml.config import Settings
from streamml.stores.objects import s3_client

pytestmark = [pytest.mark.integration, pytest.mark.minio]


def test_buckets_exist_and_put_get_roundtrip(settings: Settings, require: Callable[[str], None], uid: str) -> None:
    require("minio")
    s3 = s3_client(settings.minio)
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(names.BUCKETS) <= buckets
    key = f"tests/{uid}/hello.bin"
    body = bytes(range(256)) * 100
    s3.put_object(Bucket=names.BUCKET_RAW, Key=key, Body=body)
    try:
        assert s3.get_object(Bucket=names.BUCKET_RAW, Key=key)["Body"].read() == body
    finally:
        s3.delete_object(Bucket=names.BUCKET_RAW, Key=key)
