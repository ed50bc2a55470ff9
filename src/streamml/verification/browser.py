"""Headless Chromium driven through the DevTools protocol, for the dashboard's browser tests and screenshots.

A bare ``chromium --screenshot`` catches a blank Streamlit page, because the app's content arrives over a websocket
after load; this waits until Streamlit says the script has finished and nothing is loading.

    python -m streamml.verification.browser --out docs/img            # starts its own dashboard on a free port
    python -m streamml.verification.browser --url http://127.0.0.1:8501 --out /tmp/shots

It opens every page, saves ``dashboard-<page>.png`` and exits 1 when a page shows an exception box or never
finishes. Needs Debian's ``chromium`` and the ``websockets`` package (a dev dependency).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamml.dashboard.server import streamlit_argv
from streamml.errors import StreamMLError
from streamml.paths import repo_root

logger = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PAGES: dict[str, str] = {
    "live": "",
    "drift": "drift",
    "kafka": "kafka",
    "models": "models",
    "pipelines": "pipelines",
    "predict": "predict",
}
"""Page name -> URL path of every dashboard page (Live is the default page, at the root)."""

STREAMLIT_DONE = """(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]')
    && !document.querySelector('[data-testid="stSpinner"]')
    && !!document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stHeading"]');
})()"""

PAGE_STATE = """(() => {
  const text = (sel) => [...document.querySelectorAll(sel)].map(e => e.innerText.trim());
  return {
    title: (document.querySelector('h1') || {}).innerText || '',
    exceptions: text('[data-testid="stException"]'),
    warnings: text('[data-testid="stAlertContentWarning"]'),
    errors: text('[data-testid="stAlertContentError"]'),
    charts: document.querySelectorAll('[data-testid="stVegaLiteChart"]').length,
    tables: document.querySelectorAll('[data-testid="stDataFrame"]').length,
  };
})()"""

HISTOGRAM_BARS = """(() => {
  // The Live page's error histogram as drawn: its bars (SVG, each labelled with its tooltip) and their counts.
  const box = document.querySelector('.st-key-error-histogram');
  if (!box) return {found: false, bars: 0, total: 0, caption: ''};
  const caption = (box.querySelector('[data-testid="stCaptionContainer"]') || {}).innerText || '';
  const bars = [...box.querySelectorAll('svg .mark-rect path[aria-roledescription="bar"]')];
  const total = bars.reduce((sum, bar) => {
    const m = /count: ([0-9,]+)/.exec(bar.getAttribute('aria-label') || '');
    return sum + (m ? parseInt(m[1].replace(/,/g, ''), 10) : 0);
  }, 0);
  return {found: true, bars: bars.length, total, caption};
})()"""

PREDICT_PAIRS = "414, 2571\n68, 318\n600, 1"
"""Extra (user, movie) pairs the screenshot run types into the Predict page (MovieLens ids; any id works)."""

SUBMIT_PREDICT = """(() => {
  // Type the pairs into the form's text area the way React sees typing, then press the form's Predict button.
  const area = document.querySelector('[data-testid="stTextArea"] textarea');
  const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
  setter.call(area, PAIRS);
  area.dispatchEvent(new Event('input', {bubbles: true}));
  const button = [...document.querySelectorAll('[data-testid="stForm"] button')].find(b => /Predict/.test(b.innerText));
  setTimeout(() => button.click(), 300);
  return !!button;
})()"""

PREDICTED = """(() => !!document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stDataFrame"]')
  || !!document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stAlert"]'))()"""

FULL_HEIGHT = """(() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return Math.ceil(Math.max(main.scrollHeight, block ? block.getBoundingClientRect().height + 120 : 0));
})()"""


@dataclass(frozen=True)
class PageState:
    """What a person would see on a page: its title, exception boxes, warnings and errors, how many charts."""

    name: str
    url: str
    ready: bool
    title: str
    exceptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    charts: int = 0
    tables: int = 0


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """One headless Chromium tab under DevTools-protocol control; use as a context manager."""

    def __init__(self, chromium: str | None = None, width: int = 1400, height: int = 1000) -> None:
        found = chromium or find_chromium()
        if found is None:
            raise StreamMLError("chromium is not installed (Debian: apt-get install -y chromium)")
        self.chromium = found
        self.width = width
        self.height = height
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: str | None = None
        self._ws: Any = None
        self._id = 0

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        port = free_port()
        self._profile = tempfile.mkdtemp(prefix="streamml-chromium-")
        args = [
            self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
            "--disable-quic", "--hide-scrollbars", "--force-color-profile=srgb",
            f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={self._profile}", "about:blank",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        try:
            page = self._page_target(port)
            self._ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10).__enter__()
            self.call("Page.enable")
            self.resize(self.width, self.height)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _page_target(self, port: int, timeout: float = 60.0) -> dict[str, Any]:  # a loaded CI machine is slow
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StreamMLError(f"chromium exited with {self._proc.returncode} at start")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as resp:  # noqa: S310
                    tabs = json.load(resp)
                return next(t for t in tabs if t["type"] == "page")
            except (OSError, StopIteration, ValueError):
                time.sleep(0.1)
        raise StreamMLError(f"chromium did not open its DevTools port within {timeout:.0f}s")

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are dropped)."""
        if self._ws is None:
            raise StreamMLError("the browser is not started (use it as a context manager)")
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise StreamMLError(f"DevTools {method} failed: {msg['error']}")
                return dict(msg.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise StreamMLError(f"page script failed: {result['exceptionDetails'].get('text', '')}")
        return result.get("result", {}).get("value")

    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def open(self, url: str, ready_js: str = STREAMLIT_DONE, timeout: float = 60.0, settle: float = 1.5) -> bool:
        """Navigate and wait until ``ready_js`` holds, and still holds ``settle`` seconds later (charts painted,
        no rerun started in between). Return whether it did within ``timeout``."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        time.sleep(0.5)
        while time.monotonic() < deadline:
            if self.evaluate(ready_js) is True:
                time.sleep(settle)
                if self.evaluate(ready_js) is True:
                    return True
            time.sleep(0.25)
        return False

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; return its last value."""
        deadline = time.monotonic() + timeout
        value = self.evaluate(expression)
        while not value and time.monotonic() < deadline:
            time.sleep(0.5)
            value = self.evaluate(expression)
        return value

    def screenshot(self, path: Path, full_page: bool = True, max_height: int = 5000) -> Path:
        """Save a PNG of the page; ``full_page`` grows the viewport to the app's content first (Streamlit scrolls
        inside its own container, so the protocol's "beyond viewport" capture would not see it)."""
        if full_page:
            height = min(max_height, max(self.height, int(self.evaluate(FULL_HEIGHT) or self.height)))
            self.resize(self.width, height)
            time.sleep(1.5)  # charts re-render at the new size
        data = self.call("Page.captureScreenshot", format="png")["data"]
        if full_page:
            self.resize(self.width, self.height)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def page_state(self, name: str, url: str, ready: bool) -> PageState:
        state = self.evaluate(PAGE_STATE) or {}
        return PageState(name=name, url=url, ready=ready, **state)


@contextmanager
def streamlit_server(
    port: int | None = None, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """Run the dashboard (:func:`~streamml.dashboard.server.streamlit_argv`, without a file watcher) on 127.0.0.1 and
    yield its URL; stop it afterwards."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    args = [*streamlit_argv("127.0.0.1", port), "--server.fileWatcherType", "none"]
    log = tempfile.NamedTemporaryFile(prefix="streamml-dashboard-", suffix=".log", delete=False)
    proc = subprocess.Popen(  # noqa: S603
        args, cwd=repo_root(), env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise StreamMLError(f"the dashboard exited with {proc.returncode}: {_tail(log.name)}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise StreamMLError(f"the dashboard did not answer on {url} within {timeout:.0f}s: {_tail(log.name)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def capture_pages(
    browser: Browser, base_url: str, out_dir: Path | None, pages: dict[str, str] = PAGES, timeout: float = 60.0
) -> list[PageState]:
    """Open every page, wait until it has finished, record what it shows and (with ``out_dir``) save
    ``dashboard-<page>.png``."""
    states = []
    for name, path in pages.items():
        url = f"{base_url.rstrip('/')}/{path}"
        ready = browser.open(url, timeout=timeout)
        if name == "live":  # vega draws the histogram after the script has finished
            browser.wait_for(f"{HISTOGRAM_BARS}.total > 0", timeout=15)
        if name == "predict":  # show an answer, not an empty form
            browser.evaluate(SUBMIT_PREDICT.replace("PAIRS", json.dumps(PREDICT_PAIRS)))
            browser.wait_for(PREDICTED, timeout=timeout)
            browser.wait_for(STREAMLIT_DONE, timeout=timeout)
        states.append(browser.page_state(name, url, ready))
        if out_dir is not None:
            browser.screenshot(out_dir / f"dashboard-{name}.png")
    return states


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot every dashboard page with headless Chromium.")
    parser.add_argument("--url", help="A running dashboard (default: start one on a free port).")
    parser.add_argument("--out", type=Path, default=repo_root() / "docs" / "img", help="Directory for the PNGs.")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds each page may take.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    @contextmanager
    def dashboard() -> Iterator[str]:
        if args.url:
            yield args.url
        else:
            with streamlit_server() as url:
                yield url

    with dashboard() as url, Browser(width=args.width) as browser:
        states = capture_pages(browser, url, args.out, timeout=args.timeout)
    bad = 0
    for s in states:
        problems = s.exceptions + ([] if s.ready else ["did not finish"])
        bad += bool(problems)
        logger.info(
            "%-10s %s ready=%s charts=%d warnings=%d errors=%d exceptions=%d %s",
            s.name, args.out / f"dashboard-{s.name}.png", s.ready, s.charts, len(s.warnings), len(s.errors),
            len(s.exceptions), "; ".join(problems)[:300],
        )  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
