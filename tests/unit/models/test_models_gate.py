"""The promotion gate as pure logic: no MLflow."""

from __future__ import annotations

import math

import pytest

from streamml.models.registry import DEFAULT_MARGIN, GateDecision, decide


def test_no_champion_promotes() -> None:
    decision = decide(0.61, None)
    assert decision.promote
    assert decision.champion_auc is None
    assert decision.margin == DEFAULT_MARGIN == 0.002


def test_better_by_more_than_the_margin_promotes() -> None:
    decision = decide(0.815, 0.810, margin=0.002)
    assert decision.promote
    assert (decision.candidate_auc, decision.champion_auc) == (0.815, 0.810)
    assert "0.8150 > champion 0.8100" in decision.reason


def test_worse_does_not_promote() -> None:
    decision = decide(0.70, 0.81)
    assert not decision.promote
    assert "<=" in decision.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (0.8120, 0.8100, 0.002, False),  # better, but only by the margin: not enough
        (0.8119, 0.8100, 0.002, False),
        (0.8121, 0.8100, 0.002, True),
        (0.8101, 0.8100, 0.0, True),  # no margin: any improvement
        (0.8100, 0.8100, 0.0, False),  # a tie never displaces the champion
        (0.8300, 0.8100, 0.05, False),  # a large margin holds back a clearly better model
    ],
)
def test_margin_is_respected(candidate: float, champion: float, margin: float, promote: bool) -> None:
    assert decide(candidate, champion, margin).promote is promote


def test_undefined_candidate_auc_never_promotes_and_undefined_champion_does_not_block() -> None:
    assert not decide(math.nan, 0.8).promote
    assert not decide(math.nan, None).promote
    assert decide(0.7, math.nan).promote


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin"):
        decide(0.8, 0.7, margin=-0.01)


def test_decision_is_json_able() -> None:
    payload = decide(0.9, 0.8).as_dict()
    assert payload == {
        "promote": True,
        "reason": payload["reason"],
        "candidate_auc": 0.9,
        "champion_auc": 0.8,
        "margin": DEFAULT_MARGIN,
    }
    assert isinstance(GateDecision(**payload), GateDecision)
