"""Real health checks of each service: a request that only succeeds when the server does its job."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from streamml import names
from streamml.config import Settings
from streamml.errors import StreamMLError

logger = logging.getLogger(__name__)

SERVICES = ("kafka", "redis", "minio", "mlflow", "airflow", "spark")


@dataclass(frozen=True)
class Health:
    service: str
    ok: bool
    detail: str


class StillDown(StreamMLError):
    """Services that did not become healthy in time; ``down`` holds each one's last failed check."""

    def __init__(self, down: list[Health], timeout: float) -> None:
        reasons = "; ".join(f"{h.service} ({h.detail})" for h in down)
        super().__init__(f"still down after {timeout:.0f}s: {reasons}")
        self.down = down


def check_kafka(settings: Settings, timeout: float) -> str:
    from confluent_kafka.admin import AdminClient

    from streamml import names
    from streamml.streaming.clients import PLAIN, SCRAM, admin_config

    # the admin over PLAIN: the broker serves before the stack's setup creates the SCRAM accounts
    mechanism = PLAIN if settings.kafka.user == names.KAFKA_ADMIN else SCRAM
    admin = AdminClient({**admin_config(settings.kafka, mechanism), "socket.timeout.ms": int(timeout * 1000)})
    meta = admin.list_topics(timeout=timeout)
    return f"{len(meta.brokers)} broker(s), {len([t for t in meta.topics if not t.startswith('__')])} topic(s)"


def check_redis(settings: Settings, timeout: float) -> str:
    from streamml.stores.redis_client import redis_client

    client = redis_client(settings.redis, timeout)
    try:
        client.ping()
        if settings.redis.user != names.REDIS_ADMIN:  # a program's user may not run INFO or CONFIG
            return f"PONG (signed in as {settings.redis.user})"
        info = client.info("server")
        aof = client.config_get("appendonly").get("appendonly")
        return f"PONG, redis {info['redis_version']}, appendonly={aof}"
    finally:
        client.close()


def check_minio(settings: Settings, timeout: float) -> str:
    from streamml.stores.objects import s3_client

    if not settings.minio.secret_key.get_secret_value():  # a Compose service without a MinIO user: is it serving?
        httpx.get(f"{settings.minio.endpoint_url}/minio/health/live", timeout=timeout).raise_for_status()
        return "live (this process has no MinIO user)"
    buckets = [b["Name"] for b in s3_client(settings.minio, timeout).list_buckets().get("Buckets", [])]
    return f"buckets: {', '.join(sorted(buckets)) or '(none)'}"


def check_mlflow(settings: Settings, timeout: float) -> str:
    ml = settings.mlflow
    base = ml.tracking_uri
    with httpx.Client(timeout=timeout, auth=(ml.user, ml.password.get_secret_value())) as http:
        http.get(f"{base}/health").raise_for_status()
        resp = http.post(f"{base}/api/2.0/mlflow/experiments/search", json={"max_results": 100})
        resp.raise_for_status()
    return f"/health OK, {len(resp.json().get('experiments', []))} experiment(s)"


def check_airflow(settings: Settings, timeout: float) -> str:
    resp = httpx.get(f"{settings.airflow.base_url}/api/v2/monitor/health", timeout=timeout)
    resp.raise_for_status()
    components = resp.json()
    down = [name for name, part in components.items() if isinstance(part, dict) and part.get("status") != "healthy"]
    if down:
        raise StreamMLError(f"unhealthy: {', '.join(down)}")
    from streamml.airflow_client import AirflowClient

    client = AirflowClient(settings.airflow, timeout=timeout)
    try:
        client.login()
    finally:
        client.close()
    return f"{', '.join(sorted(components))} healthy; token OK"


def check_spark(settings: Settings, timeout: float) -> str:
    """The standalone master answers and at least one worker has registered with it (so it holds the secret)."""
    sp = settings.spark
    state = httpx.get(f"http://{sp.host}:{sp.master_ui_port}/json/", timeout=timeout).raise_for_status().json()
    if state.get("status") != "ALIVE" or not state.get("aliveworkers"):
        raise StreamMLError(f"master {state.get('status', '?')}, {state.get('aliveworkers', 0)} worker(s) alive")
    return f"master ALIVE, {state['aliveworkers']} worker(s), {state.get('cores', 0)} core(s)"


def check_api(settings: Settings, timeout: float) -> str:
    resp = httpx.get(f"{settings.api.base_url}/health", timeout=timeout)
    resp.raise_for_status()
    return f"/health {resp.json().get('status', '?')}"


def check_dashboard(settings: Settings, timeout: float) -> str:
    d = settings.dashboard
    resp = httpx.get(f"http://{d.host}:{d.port}/_stcore/health", timeout=timeout)
    resp.raise_for_status()
    return f"streamlit {resp.text.strip()}"


CHECKS: dict[str, Callable[[Settings, float], str]] = {
    "kafka": check_kafka,
    "redis": check_redis,
    "minio": check_minio,
    "mlflow": check_mlflow,
    "airflow": check_airflow,
    "spark": check_spark,
    "api": check_api,
    "dashboard": check_dashboard,
}


def check(service: str, settings: Settings, timeout: float = 5.0) -> Health:
    """Check one service; any failure becomes a not-ok :class:`Health` with the reason."""
    try:
        return Health(service, True, CHECKS[service](settings, timeout))
    except Exception as exc:  # noqa: BLE001 - every failure of a probe means "down", with its reason
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Health(service, False, f"{type(exc).__name__}: {detail}"[:200])


def wait_for(
    services: Iterable[str],
    settings: Settings,
    timeout: float = 180.0,
    on_wait: Callable[[list[Health], float], None] | None = None,
) -> list[Health]:
    """Poll until every service is healthy, with backoff; raise naming what is still down at the deadline."""
    pending = list(services)
    unknown = [s for s in pending if s not in CHECKS]
    if unknown:
        raise StreamMLError(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    deadline = time.monotonic() + timeout
    delay = 0.5
    healthy: list[Health] = []
    while True:
        results = [check(s, settings, timeout=min(5.0, max(1.0, deadline - time.monotonic()))) for s in pending]
        healthy += [h for h in results if h.ok]
        down = [h for h in results if not h.ok]
        if not down:
            return healthy
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StillDown(down, timeout)
        if on_wait:
            on_wait(down, remaining)
        pending = [h.service for h in down]
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 5.0)
