"""Alert rules evaluated when a batch finishes (the runner's hook, fake encoder): a threshold fires when crossed and
only then, a change against the previous batch or period fires when it is significant and in the rule's
direction, a rule that cannot be evaluated is recorded and never fails the batch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.service.batch_data import ROWS, batch_settings, csv_bytes, queue
from voce.service import analytics
from voce.service.batches.executor import LocalExecutor
from voce.service.batches.runner import RunnerConfig
from voce.service.batches.store import BatchStore
from voce.service.insights import alerts
from voce.service.insights.alerts import AlertService, RuleIn, batch_facts, evaluate_batch
from voce.service.insights.tables import AlertEvent
from voce.service.insights.views import Owner

OWNER = Owner(tenant="default", key="k1", name="Giulia")


class Bench:
    """A store, a runner config and the fake analyzer: batches queued and run to the end in this thread."""

    def __init__(self, tmp: Path, bundle: Path, analyzer: Any, database_url: str | None = None) -> None:
        self.tmp = tmp
        self.settings = batch_settings(tmp, bundle, discovery=False, database_url=database_url)
        self.store = BatchStore.open(self.settings.resolved_database_url())
        self.analyzer = analyzer
        self.rules = AlertService(self.store.sessions, OWNER)

    def run(self, bid: str, rows: list[dict[str, str]]) -> str:
        src = self.tmp / f"{bid}.csv"
        src.write_bytes(csv_bytes(rows))
        queue(self.store, self.settings, src, bid)
        LocalExecutor(self.store, lambda: self.analyzer, RunnerConfig.from_settings(self.settings)).run_until_idle()
        b = self.store.get(bid)
        assert b is not None and b.status == "done", b and b.error
        return bid

    def rule(self, **body: Any) -> int:
        return self.rules.create(RuleIn(**{"name": "r", "min_rows": 5, **body})).id

    def events(self, bid: str) -> dict[int | None, AlertEvent]:
        with self.store.sessions() as s:
            return {e.rule_id: e for e in s.scalars(select(AlertEvent).where(AlertEvent.batch_id == bid))}


@pytest.fixture()
def bench(tmp_path: Path, tiny_bundle_dir: Path, fake_analyzer: Any) -> Bench:
    return Bench(tmp_path, tiny_bundle_dir, fake_analyzer)


def survey(n: int, nps: list[int], month: str = "2026-03", start: int = 0) -> list[dict[str, str]]:
    """``n`` rows whose NPS answers cycle through ``nps``, dated in ``month``."""
    return [{"id": f"s{start + i}", "commento": f"Commento numero {start + i}", "nps": str(nps[i % len(nps)]),
             "csat": "", "data": f"{month}-{1 + i % 28:02d}", "regione": "nord" if i % 2 else "sud"} for i in range(n)]


def test_a_threshold_fires_when_crossed_and_only_then(bench: Bench) -> None:
    first = bench.run("first", ROWS)  # the same rows twice: the figures of the second are known from the first
    report = analytics.batch_kpis(batch_facts(bench.store, first))
    c = report.sentiment
    neg = c.negative / (c.positive + c.neutral + c.negative + c.mixed)
    topic = max(report.topics, key=lambda t: t.count)
    # NPS of the 12 rows by hand: answers 10,9,9,8,7,6,3,0,10,4 -> 4 promoters, 4 detractors of 10 = 0;
    # nord: 10,9,7,3,10,4 -> (3 - 2) / 6 = 16.67; sud: 9,8,6,0 -> (1 - 2) / 4 = -25
    fires = {
        bench.rule(metric="nps", condition="below", threshold=10): 0.0,
        bench.rule(subject="segment", subject_id="regione:nord", metric="nps", condition="above", threshold=10,
                   min_rows=6): 16.67,
        bench.rule(metric="negative_share", condition="above", threshold=max(neg - 0.01, 0)): neg,
        bench.rule(subject="topic", subject_id=topic.id, metric="share", condition="above", threshold=topic.share - 0.001,
                   min_rows=1): topic.share,
    }
    quiet = [
        bench.rule(metric="nps", condition="below", threshold=-50),
        bench.rule(metric="nps", condition="below", threshold=10, min_rows=11),  # 10 answers: too few
        bench.rule(subject="segment", subject_id="regione:sud", metric="nps", condition="above", threshold=10, min_rows=1),
        bench.rule(metric="negative_share", condition="above", threshold=min(neg + 0.01, 1)),
        bench.rule(subject="topic", subject_id=topic.id, metric="share", condition="above", threshold=topic.share + 0.001,
                   min_rows=1),
        bench.rule(subject="topic", subject_id="no_such_topic", metric="share", condition="below", threshold=1, min_rows=1),
        bench.rule(metric="nps", condition="below", threshold=10, enabled=False),
    ]
    second = bench.run("second", ROWS)
    events = bench.events(second)
    assert set(events) == set(fires), {k: (e.code, e.value) for k, e in events.items()}
    for rid, value in fires.items():
        e = events[rid]
        assert (e.status, e.code, e.webhook_status) == ("fired", "alert.threshold", "none")
        assert e.value == pytest.approx(value, abs=0.01) and e.params["value"] == e.value
    assert events[next(iter(fires))].rows == 10 and not set(quiet) & set(events)
    assert bench.events(first) == {}  # rules made after the first batch finished never saw it
    assert evaluate_batch(bench.store, second).events == []  # once per rule and batch
    assert len(bench.events(second)) == len(fires)


def test_a_significant_change_against_the_previous_batch(bench: Bench) -> None:
    down = bench.rule(metric="nps", condition="change", compare_to="previous_batch", direction="down", min_rows=20)
    up = bench.rule(metric="nps", condition="change", compare_to="previous_batch", direction="up", min_rows=20)
    big = bench.rule(metric="nps", condition="change", compare_to="previous_batch", threshold=150, min_rows=20)
    nord = bench.rule(subject="segment", subject_id="regione:nord", metric="nps", condition="change",
                      compare_to="previous_batch", min_rows=20)  # 20 rows a side in nord
    good = bench.run("good", survey(40, [9, 10]))
    assert bench.events(good) == {}  # no previous batch: nothing to compare with
    bad = bench.run("bad", survey(40, [0, 3, 10]))
    events = bench.events(bad)
    assert set(events) == {down, nord}, {k: e.params for k, e in events.items()}
    e = events[down]
    assert (e.code, e.previous, e.params["previous_batch_id"], e.params["significant"]) == ("alert.change", 100.0, good, True)
    # 13 tens, 27 zeros and threes
    assert e.value == pytest.approx(100 * (13 - 27) / 40, abs=0.01) and e.p_value is not None and e.p_value < 0.001
    assert e.params["diff"] == pytest.approx(e.value - 100, abs=0.01) and e.rows == 40
    assert up not in events and big not in events  # the wrong way; smaller than the rule's minimum change
    same = bench.run("same", survey(40, [0, 3, 10]))
    assert bench.events(same) == {}  # no change from the batch before


def test_a_significant_change_against_the_previous_period(bench: Bench) -> None:
    down = bench.rule(metric="nps", condition="change", compare_to="previous_period", direction="down", min_rows=20)
    net = bench.rule(metric="net_sentiment", condition="change", compare_to="previous_period", min_rows=20)
    bid = bench.run("months", survey(30, [10], "2026-01") + survey(30, [0], "2026-02", start=30))
    e = bench.events(bid)[down]
    assert (e.params["previous_period"], e.params["period"], e.previous, e.value) == ("2026-01", "2026-02", 100.0, -100.0)
    assert e.params["significant"] is True
    assert net not in bench.events(bid)  # the same fake comments both months: no change of sentiment
    flat = bench.run("flat", survey(60, [10, 0], "2026-01"))
    assert bench.events(flat) == {}  # one month: no previous period


def test_a_rule_that_cannot_be_evaluated_is_recorded_and_the_batch_is_done(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = bench.rule(metric="nps", condition="below", threshold=50)
    works = bench.rule(metric="nps", condition="change", compare_to="previous_period", min_rows=1)
    real = alerts._threshold

    def fail(rule: Any, *args: Any) -> Any:
        if rule.id == broken:
            raise RuntimeError("boom")
        return real(rule, *args)

    monkeypatch.setattr(alerts, "_threshold", fail)
    bid = bench.run("one", survey(30, [10], "2026-01") + survey(30, [0], "2026-02", start=30))
    events = bench.events(bid)
    assert events[broken].status == "error" and events[broken].code == "alert.error"
    assert len(events[broken].params["reference"]) == 12 and "boom" not in str(events[broken].params)
    assert events[works].status == "fired"

    def explode(*_: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(alerts, "batch_facts", explode)
    other = bench.run("two", survey(30, [10]))  # done, whatever the alerts did
    assert bench.events(other) == {}


@pytest.mark.postgres
def test_rules_fire_on_postgresql(tmp_path: Path, tiny_bundle_dir: Path, fake_analyzer: Any, postgres_url: str) -> None:
    bench = Bench(tmp_path, tiny_bundle_dir, fake_analyzer, database_url=postgres_url)
    bench.rules = AlertService(bench.store.sessions, Owner(tenant="default", key="pg", name="pg"))
    rid = bench.rule(metric="nps", condition="below", threshold=10)
    bid = bench.run(f"pg{tmp_path.name[-8:]}", ROWS)
    assert bench.events(bid)[rid].value == 0.0
    bench.rules.delete(rid)  # the event stays, without its rule
    assert bench.events(bid)[None].rule_name == "r"
