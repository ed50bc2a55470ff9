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


def test_the_retrain_split_evaluates_on_the_newest_half_of_the_feedback() -> None:
    from streamml.models.retrain import QUANTILE_RANGE, retrain_quantile

    assert retrain_quantile(80_000, 20_000) == pytest.approx(0.9)
    assert retrain_quantile(80_000, 4_000) == pytest.approx(1 - 2_000 / 84_000, abs=1e-4)
    assert retrain_quantile(1_000, 100_000, evaluation_share=0.9) == QUANTILE_RANGE[0]
    assert retrain_quantile(10_000_000, 200) == QUANTILE_RANGE[1]


def test_shadow_evidence_reads_the_aggregators_snapshot_leniently() -> None:
    from streamml.models.online_gate import ShadowEvidence

    snap = {"shadow": {"champion_version": "3", "challenger_version": "4", "paired_total": 1200,
                       "champion_auc": 0.81, "challenger_auc": 0.83, "likes": 9, "window": 1000}}  # fmt: skip
    evidence = ShadowEvidence.from_snapshot(snap)
    assert evidence == ShadowEvidence(3, 4, 1200, 0.81, 0.83, likes=9, window=1000)
    assert evidence.smaller_class() == 9
    older = {"shadow": {k: v for k, v in snap["shadow"].items() if k not in ("likes", "window")}}
    assert ShadowEvidence.from_snapshot(older).smaller_class() == 0  # counts unknown: never enough
    for bad in (None, {}, {"shadow": None}, {"shadow": {"champion_version": "x"}}, {"shadow": {"paired_total": 1}}):
        assert ShadowEvidence.from_snapshot(bad) is None
