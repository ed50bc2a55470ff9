"""The MinIO adapter's error mapping, on a real boto3 client whose answers are stubbed (no network): a missing key
is None for ``get_bytes``, a server error is transient (retried), a refusal is not, and a key MinIO kept on
delete raises."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from streamml.config import MinioSettings
from streamml.errors import StreamMLError, TransientError
from streamml.stores.objects import ObjectStore, s3_client


@pytest.fixture
def store() -> Iterator[tuple[ObjectStore, Stubber]]:
    client = s3_client(MinioSettings())
    with Stubber(client) as stub:
        yield ObjectStore(MinioSettings(), "features", client=client), stub
        stub.assert_no_pending_responses()


def test_get_bytes_of_a_missing_key_is_none_and_of_a_present_one_its_content(
    store: tuple[ObjectStore, Stubber],
) -> None:
    objects, stub = store
    stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
    assert objects.get_bytes("online/_pending/p0.json") is None
    body = b'{"entries": []}'
    stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body))})
    assert objects.get_bytes("online/_pending/p0.json") == body


def test_a_server_error_is_transient_and_a_refusal_is_not(store: tuple[ObjectStore, Stubber]) -> None:
    objects, stub = store
    stub.add_client_error("put_object", "SlowDown", http_status_code=503)
    with pytest.raises(TransientError, match="SlowDown"):
        objects.put_bytes("online/x.parquet", b"x")
    stub.add_client_error("put_object", "AccessDenied", http_status_code=403)
    with pytest.raises(StreamMLError, match="refused") as refused:
        objects.put_bytes("online/x.parquet", b"x")
    assert not isinstance(refused.value, TransientError)


def test_delete_keys_raises_when_a_key_was_kept(store: tuple[ObjectStore, Stubber]) -> None:
    objects, stub = store
    stub.add_response("delete_objects", {})
    objects.delete_keys(["a", "b"])
    stub.add_response("delete_objects", {"Errors": [{"Key": "b", "Code": "InternalError", "Message": "busy"}]})
    with pytest.raises(TransientError, match="kept 1 object"):
        objects.delete_keys(["a", "b"])
