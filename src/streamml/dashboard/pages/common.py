"""What every page shares: cached clients, the service status in the sidebar, and how a down service is shown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from streamml.config import KafkaSettings, RedisSettings, Settings
from streamml.dashboard import kafka_admin
from streamml.dashboard.api_client import ApiClient, api_base_url
from streamml.dashboard.errors import ApiError, ServiceDown
from streamml.stores.redis_client import redis_client as connect_redis

REDIS_TIMEOUT = 3.0  # seconds: a page says "Redis is down" within seconds instead of hanging


# Clients are shared by every session of the process (they are thread-safe) and keyed by their address.
@st.cache_resource(show_spinner=False)
def _redis(url: str, _settings: RedisSettings) -> Any:  # noqa: ARG001 - url is the cache key
    return connect_redis(_settings, timeout=REDIS_TIMEOUT)


@st.cache_resource(show_spinner=False)
def _kafka_admin(bootstrap: str, _kafka: KafkaSettings) -> Any:  # noqa: ARG001 - bootstrap is the cache key
    return kafka_admin.admin_client(_kafka)


@st.cache_resource(show_spinner=False)
def _api(base_url: str, _api_key: str) -> ApiClient:
    return ApiClient(base_url, _api_key)


def redis_client(redis: RedisSettings) -> Any:
    """The shared Redis client, with short timeouts."""
    return _redis(redis.url, redis)


def kafka_client(settings: Settings) -> Any:
    """The shared Kafka admin client, after a quick check that the broker's port answers (raises ServiceDown)."""
    kafka_admin.check_port("Kafka", settings.kafka.host, settings.kafka.port)
    return _kafka_admin(settings.kafka.bootstrap_servers, settings.kafka)


def api_client(settings: Settings) -> ApiClient:
    """The shared API client."""
    return _api(api_base_url(settings), settings.api.api_key.get_secret_value())


def show_problem(exc: ServiceDown | ApiError, what: str) -> None:
    """Say plainly what could not be shown and why; the rest of the page keeps rendering."""
    if isinstance(exc, ServiceDown):
        st.warning(f"**{what} unavailable.** {exc}", icon=":material/cloud_off:")
    else:
        st.error(f"**{what} failed.** {exc}", icon=":material/error:")


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Run a block; a down service or an API error becomes a message instead of an exception box."""
    try:
        yield
    except (ServiceDown, ApiError) as exc:
        show_problem(exc, what)


def _check_redis(settings: Settings) -> str | None:
    import redis

    try:
        redis_client(settings.redis).ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    return None


def _check_kafka(settings: Settings) -> str | None:
    try:
        kafka_admin.list_topics(kafka_client(settings), timeout=3.0)
    except ServiceDown as exc:
        return exc.reason
    return None


def _check_api(settings: Settings) -> str | None:
    try:
        ready = api_client(settings).ready()
    except ServiceDown as exc:
        return exc.reason
    if ready.ok:
        return None
    return "not ready: " + (", ".join(f"{k} ({v})" for k, v in ready.down.items()) or ready.detail)


@st.fragment(run_every=10)
def service_status(settings: Settings) -> None:
    """A line per service the dashboard reads, refreshed every 10 s."""
    st.caption("Services")
    for name, check in (("Redis", _check_redis), ("Kafka", _check_kafka), ("API", _check_api)):
        problem = check(settings)
        if problem is None:
            st.markdown(f":green[●] {name}")
        else:
            st.markdown(f":red[●] {name}", help=problem)
    st.caption(f"checked {time.strftime('%H:%M:%S')}")
