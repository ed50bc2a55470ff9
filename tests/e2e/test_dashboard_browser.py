"""The dashboard in a real browser: headless Chromium opens every page against the running stack after a short
replay, waits until Streamlit has finished, and checks what a person would see (no exception box, the Live page's
error histogram drawn with data). A second dashboard pointed at closed ports must say plainly that the services are
down instead of crashing. Screenshots go to ``<state_dir>/screenshots``; ``python -m streamml.verification.browser``
refreshes the committed ones in docs/img.

Runs after tests/integration, whose DAG test trains the champion the scorer serves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import pytest

from streamml import names
from streamml.config import Settings
from streamml.names import METRICS_RECENT
from streamml.verification import browser as b

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

REPLAYED = 400


@pytest.fixture(scope="module")
def chromium() -> str:
    path = b.find_chromium()
    if path is None:
        pytest.fail("chromium is missing; ./run.sh test installs it (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def replayed(settings: Settings, require: Callable[[str], None]) -> str:
    """A short replay through the platform's topics; returns its run id once the metrics aggregator has joined its
    predictions with their feedback and the feature updater has caught up."""
    import redis
    from confluent_kafka import Producer

    from streamml.dashboard import kafka_admin
    from streamml.streaming.clients import producer_config
    from streamml.streaming.replayer import Pace, send_ratings
    from streamml.streaming.runners import stream_ratings

    for service in ("kafka", "redis", "minio", "mlflow"):
        require(service)
    client = redis.Redis.from_url(settings.redis.url)
    version = client.get(names.FEATURE_VERSION_CURRENT)
    assert version is not None, "no online feature version: the movielens_training DAG (integration tests) runs first"
    run_id = f"browser-{int(time.time())}"
    producer = Producer(producer_config(settings.kafka, client_id="streamml-browser-test"))
    ratings = islice(stream_ratings(settings, int(version)), REPLAYED)
    sent = send_ratings(ratings, producer, Pace(rate=400), feedback_delay=0.5, run_id=run_id, limit=REPLAYED)
    assert sent == REPLAYED

    deadline = time.monotonic() + 120
    ours = f'{{"request_id": "{run_id}-'.encode()
    while not any(item.startswith(ours) for item in client.lrange(METRICS_RECENT, 0, -1)):
        assert time.monotonic() < deadline, "the metrics aggregator joined none of the replayed predictions in 120 s"
        time.sleep(1)
    # Leave the platform as we found it: the feature updater has applied all our feedback before the next test
    # reads online features.
    admin = kafka_admin.admin_client(settings.kafka)
    ends = kafka_admin.topic_offsets(admin, [names.TOPIC_FEEDBACK])
    target = dict(zip(ends["partition"], ends["latest"], strict=True))
    updater = [g for g in kafka_admin.consumer_groups(admin) if g.group_id == names.GROUP_FEATURE_UPDATER]
    assert updater, "the feature updater's consumer group does not exist; is the feature-updater running?"
    while True:
        lag = kafka_admin.group_lag(admin, updater, ends)
        committed = dict(zip(lag["partition"], lag["committed"].fillna(-1), strict=True))
        if all(committed.get(p, -1) >= end for p, end in target.items()):
            break
        assert time.monotonic() < deadline, f"the feature updater did not catch up: {lag.to_dict('records')}"
        time.sleep(1)
    client.close()
    return run_id


@pytest.fixture(scope="module")
def screenshots(settings: Settings) -> Path:
    out = Path(settings.state_dir) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    with b.streamlit_server() as url:
        yield url


def test_every_page_renders_real_data_after_a_replay(
    chromium: str, replayed: str, dashboard_url: str, screenshots: Path, require: Callable[[str], None]
) -> None:
    require("api")
    with b.Browser(chromium) as browser:
        states = b.capture_pages(browser, dashboard_url, screenshots)
        browser.open(dashboard_url)
        histogram = browser.wait_for(f"{b.HISTOGRAM_BARS}.total > 0 && {b.HISTOGRAM_BARS}", timeout=20)

    by_name = {s.name: s for s in states}
    assert set(by_name) == set(b.PAGES)
    for state in states:
        assert state.ready, f"{state.name} never finished running ({state.url})"
        assert not state.exceptions, f"{state.name} shows an exception: {state.exceptions}"
        assert state.title == state.name.capitalize(), state
        # The whole stack is up, so no page may say a service is unavailable or a call failed.
        assert not [w for w in state.warnings if "unavailable" in w], f"{state.name}: {state.warnings}"
        assert not state.errors, f"{state.name}: {state.errors}"
        assert (screenshots / f"dashboard-{state.name}.png").stat().st_size > 20_000

    assert histogram, "the Live page's error histogram has no bars with data"
    assert histogram["bars"] == 20 and histogram["total"] > 0, histogram
    assert histogram["caption"].split()[0].replace(",", "").isdigit(), histogram
    assert int(histogram["caption"].split()[0].replace(",", "")) == histogram["total"], histogram
    assert by_name["live"].charts >= 4 and by_name["models"].charts >= 2
    assert by_name["predict"].tables == 1, "the Predict page showed no predictions after submitting the form"


def _button(label: str) -> str:
    """JS: the ``disabled`` state of the button whose text ends with ``label`` (null when there is none)."""
    return (
        "(() => { const b = [...document.querySelectorAll('button')]"
        f".find(b => b.innerText.trim().endsWith({json.dumps(label)})); return b ? b.disabled : null; }})()"
    )


def _type_password(password: str) -> str:
    """JS: type into the sign-in form's password field the way React sees a keystroke."""
    return (
        "(() => { const el = document.querySelector('input[type=\"password\"]'); if (!el) return false;"
        " const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
        f" set.call(el, {json.dumps(password)}); el.dispatchEvent(new Event('input', {{bubbles: true}}));"
        " return true; })()"
    )


def _click(label: str) -> str:
    return (
        "(() => { const b = [...document.querySelectorAll('button')]"
        f".find(b => b.innerText.trim().endsWith({json.dumps(label)})); if (b) b.click(); return !!b; }})()"
    )


def test_promote_rollback_and_trigger_need_a_signed_in_user(
    chromium: str, dashboard_url: str, settings: Settings, require: Callable[[str], None]
) -> None:
    require("api")
    with b.Browser(chromium) as browser:
        assert browser.open(f"{dashboard_url}/models"), "the Models page never finished"
        assert browser.wait_for(_button("Promote") + " !== null", timeout=60), "no Promote button"
        assert browser.evaluate(_button("Promote")) is True and browser.evaluate(_button("Roll back")) is True
        assert browser.evaluate("document.body.innerText.includes('Sign in (sidebar) to promote')")

        assert browser.evaluate(_type_password("not-the-password")) and browser.evaluate(_click("Sign in"))
        assert browser.wait_for("document.body.innerText.includes('Wrong user or password')", timeout=20)
        assert browser.evaluate(_button("Promote")) is True, "a wrong password unlocked the buttons"

        assert browser.evaluate(_type_password(settings.dashboard.admin_password.get_secret_value()))
        assert browser.evaluate(_click("Sign in"))
        assert browser.wait_for("document.body.innerText.includes('Signed in as')", timeout=20), "sign-in failed"
        assert browser.wait_for(_button("Promote") + " === false", timeout=20), "signed in, Promote stays disabled"
        assert browser.evaluate(_button("Roll back")) is False

        # Through the sidebar's link, as a person would: a reload starts a new session, signed out.
        assert browser.evaluate(
            "(() => { const a = document.querySelector('a[href$=\"/pipelines\"]'); if (a) a.click(); return !!a; })()"
        ), "no link to the Pipelines page"
        trigger = "(() => [...document.querySelectorAll('button')].find(b => b.innerText.includes('Trigger ')))()"
        assert browser.wait_for(f"{trigger} && !{trigger}.disabled", timeout=30), "signed in, Trigger is disabled"


def test_pages_say_plainly_when_services_are_down(chromium: str, screenshots: Path) -> None:
    closed = str(b.free_port())  # nothing listens there
    env = {"STREAMML_REDIS__PORT": closed, "STREAMML_KAFKA__PORT": closed, "STREAMML_API__PORT": closed}
    pages = {"live": "", "drift": "drift", "kafka": "kafka", "models": "models", "pipelines": "pipelines"}
    with b.streamlit_server(env=env) as url, b.Browser(chromium) as browser:
        states = b.capture_pages(browser, url, screenshots / "down", pages=pages, timeout=90)
    for state in states:
        assert state.ready, f"{state.name} never finished running with the services down"
        assert not state.exceptions, f"{state.name} crashed instead of saying a service is down: {state.exceptions}"
        assert any("not reachable" in w for w in state.warnings), f"{state.name}: {state.warnings}"
