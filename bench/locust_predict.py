"""Locust users for :mod:`bench.api_load` (run by locust itself, so it imports nothing of streamml).

``STREAMML_BENCH_PAIRS``: a JSON file of ``[user_id, movie_id, event_ts]`` triples, cycled; ``STREAMML_BENCH_PATH``:
``/predict`` (one pair per request) or ``/health`` (the same load on the cheapest route, the HTTP floor);
``STREAMML_BENCH_USER_RATE``: requests per second of each simulated user (locust's ``constant_throughput``).
"""

from __future__ import annotations

import itertools
import json
import os

from locust import FastHttpUser, constant_throughput, task

PAIRS = json.loads(open(os.environ["STREAMML_BENCH_PAIRS"]).read())  # noqa: SIM115, PTH123 - read once at import
PATH = os.environ.get("STREAMML_BENCH_PATH", "/predict")
_next = itertools.cycle(PAIRS).__next__


class Client(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("STREAMML_BENCH_USER_RATE", "4")))

    @task
    def call(self) -> None:
        if PATH == "/health":
            self.client.get(PATH, name=PATH)
            return
        user_id, movie_id, event_ts = _next()
        body = {"items": [{"user_id": user_id, "movie_id": movie_id, "event_ts": event_ts}]}
        with self.client.post(PATH, json=body, name=PATH, catch_response=True) as response:
            if response.status_code != 200 or len(response.json()["predictions"]) != 1:
                response.failure(f"{response.status_code}: {response.text[:200]}")
