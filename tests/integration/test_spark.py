from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from streamml.config import Settings
from streamml.spark_session import create_session
from streamml.stores.objects import s3_client

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.minio]


@pytest.fixture(scope="module")
def spark(settings: Settings) -> Iterator[object]:
    session = create_session(settings, "streamml-test", master="local[2]")
    yield session
    session.stop()


def test_parquet_roundtrip_over_s3a(spark, settings: Settings, require: Callable[[str], None], uid: str) -> None:  # type: ignore[no-untyped-def]
    require("minio")
    path = f"s3a://features/tests/{uid}/numbers"
    df = spark.range(0, 10_000).selectExpr("id", "id % 7 AS bucket")
    df.write.mode("overwrite").parquet(path)
    back = spark.read.parquet(path)
    assert back.count() == 10_000
    assert back.groupBy().sum("bucket").collect()[0][0] == sum(i % 7 for i in range(10_000))
    listing = s3_client(settings.minio).list_objects_v2(Bucket="features", Prefix=f"tests/{uid}/")
    keys = [o["Key"] for o in listing["Contents"]]
    assert any(k.endswith(".parquet") for k in keys)
