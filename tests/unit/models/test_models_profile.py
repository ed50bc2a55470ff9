"""The reference profile: quantile bins, PSI and the JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from streamml.models import profile
from streamml.models.profile import Histogram, ReferenceProfile


def test_quantile_bins_hold_equal_shares_of_the_reference() -> None:
    values = np.random.default_rng(0).normal(size=10_000)
    h = Histogram.of(values)
    assert len(h.shares) == profile.BINS
    assert np.allclose(h.shares, 0.1, atol=0.002)
    assert h.psi(values) == pytest.approx(0.0, abs=1e-9)


def test_a_point_mass_gets_fewer_bins_and_values_on_an_edge_fall_below_it() -> None:
    values = np.array([-1.0] * 70 + list(range(30)), dtype=np.float64)
    h = Histogram.of(values)
    assert h.edges[0] == -1.0
    assert h.shares[0] == pytest.approx(0.7)
    assert h.counts(np.array([-1.0, -1.0, 1e9, np.nan]))[[0, -1]].tolist() == [2, 1]


def test_psi_grows_with_the_shift_and_matches_the_formula() -> None:
    rng = np.random.default_rng(1)
    h = Histogram.of(rng.normal(size=20_000))
    small, large = h.psi(rng.normal(0.1, 1, 20_000)), h.psi(rng.normal(1.0, 1, 20_000))
    assert small is not None and large is not None
    assert small < 0.1 < 0.25 < large
    e, a = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert profile.psi(e, a) == pytest.approx(-0.25 * np.log(0.5) + 0.25 * np.log(1.5))
    assert h.psi(np.array([np.nan])) is None


def test_profile_round_trips_and_refuses_garbage() -> None:
    rng = np.random.default_rng(2)
    built = profile.build(rng.normal(size=(500, 2)), ["a", "b"], rng.uniform(size=500), rng.integers(0, 2, 500))
    again = ReferenceProfile.from_json(built.to_json())
    assert again == built
    assert set(again.features) == {"a", "b"} and again.rows == 500
    for bad in ("[]", "{}", '{"format": 1}', built.to_json().replace('"format": 1', '"format": 9'), "nan"):
        with pytest.raises(ValueError):
            ReferenceProfile.from_json(bad)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.0), (0.3, 0.3, 0.4))
