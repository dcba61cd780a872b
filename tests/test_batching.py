"""The windowed batching engine: failure isolation, lazy windows, exactly-once completion."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from mullm.utils.batching import BatchEngine, BatchJob, Unit


@dataclass
class Item:
    """A fake item: ``n`` windows; ``bad_unit`` breaks any batch holding it; ``read_error``
    raises after that many windows; ``rounds`` of follow-up work after its windows."""

    name: str
    n: int
    bad_unit: int | None = None
    read_error: int | None = None
    rounds: int = 0
    results: dict[int, str] = field(default_factory=dict)
    done_rounds: int = 0


class FakeJob(BatchJob[Item]):
    """Doubles each window's name; counts every event for the assertions."""

    lanes = ("window", "summary")

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.finished: Counter[str] = Counter()
        self.failed: dict[str, tuple[str, str | None]] = {}
        self.produced = 0  # windows yielded by read() so far
        self.consumed = 0  # windows that reached a batch

    def read(self, item: Item):  # noqa: ANN201 - a generator of payloads
        for i in range(item.n):
            if item.read_error == i:
                raise OSError(f"{item.name}: cannot read window {i}")
            self.produced += 1
            self.events.append(("yield", item.name, i))
            yield (item.name, i)

    def run_batch(self, lane: str, payloads: list[Any], number: int) -> list[str]:
        self.events.append(("batch", lane, number, tuple(payloads)))
        if lane == "window":
            self.consumed += len(payloads)
            for name, i in payloads:
                item = self.items[name]
                if item.bad_unit == i:
                    raise RuntimeError(f"boom in {name}/{i}")
            return [f"{name}:{i}" for name, i in payloads]
        return [f"summary of {name}" for name in payloads]

    def store(self, item: Item, unit: Unit, result: Any) -> None:
        if unit.lane == "window":
            item.results[unit.payload[1]] = result
        else:
            item.done_rounds += 1

    def follow_up(self, item: Item) -> list[tuple[str, Any]]:
        if item.done_rounds < item.rounds:
            return [("summary", item.name)]
        return []

    def finish(self, item: Item) -> None:
        self.finished[item.name] += 1

    def fail(self, item: Item, error: BaseException, unit: Unit | None) -> None:
        assert item.name not in self.failed, "failed twice"
        self.failed[item.name] = (str(error), None if unit is None else unit.lane)

    def run(self, items: list[Item], batch_size: int) -> BatchEngine:
        self.items = {it.name: it for it in items}
        engine = BatchEngine(self, batch_size)
        engine.run(items)
        return engine


def test_a_bad_unit_fails_only_its_item() -> None:
    job = FakeJob()
    items = [Item("a", 3), Item("b", 2, bad_unit=1), Item("c", 3)]
    job.run(items, batch_size=4)
    assert dict(job.finished) == {"a": 1, "c": 1}
    assert job.failed == {"b": ("boom in b/1", "window")}
    assert items[0].results == {0: "a:0", 1: "a:1", 2: "a:2"}
    assert items[2].results == {0: "c:0", 1: "c:1", 2: "c:2"}
    # The failed batch was retried unit by unit under the same batch number.
    batches = [e for e in job.events if e[0] == "batch"]
    first = batches[0]
    assert first[3] == (("a", 0), ("a", 1), ("a", 2), ("b", 0))
    retries = [b for b in batches if b[2] == 1]
    assert len(retries) > 1 and all(len(b[3]) in (1, 4) for b in retries)


def test_windows_are_read_lazily() -> None:
    job = FakeJob()
    job.run([Item("long", 50), Item("short", 1)], batch_size=3)
    # Reading never runs ahead of the batches by more than one batch.
    produced = consumed = 0
    for e in job.events:
        if e[0] == "yield":
            produced += 1
        elif e[1] == "window":
            consumed += len(e[3])
        assert produced - consumed <= 3
    assert dict(job.finished) == {"long": 1, "short": 1}
    # Full batches across items: the short item rides with the long one's last windows.
    sizes = [len(e[3]) for e in job.events if e[0] == "batch"]
    assert sizes == [3] * 17


def test_every_item_ends_exactly_once() -> None:
    job = FakeJob()
    items = [
        Item("ok", 4, rounds=2),  # windows, then two follow-up rounds
        Item("empty", 0),  # nothing to run: finished at once
        Item("unreadable", 5, read_error=1),  # fails mid-read with a unit queued
        Item("bad", 3, bad_unit=0, rounds=1),  # fails in a batch; its follow-up never runs
        Item("tail", 2, rounds=1),
    ]
    job.run(items, batch_size=2)
    assert dict(job.finished) == {"ok": 1, "empty": 1, "tail": 1}
    assert set(job.failed) == {"unreadable", "bad"}
    assert job.failed["unreadable"] == ("unreadable: cannot read window 1", None)
    assert items[0].done_rounds == 2 and items[4].done_rounds == 1
    # A failed item's queued units are dropped, never run after its failure.
    ran = [p for e in job.events if e[0] == "batch" for p in e[3]]
    assert ("unreadable", 0) in [e[1:] for e in job.events if e[0] == "yield"]
    assert ("unreadable", 0) not in ran
    # "bad" stops being read once it has failed, and its later windows never run alone.
    assert ("bad", 2) not in ran and ran.count(("bad", 1)) == 1
    assert "bad" not in [p for e in job.events if e[0] == "batch" and e[1] == "summary"
                         for p in e[3]]


def test_follow_ups_run_after_each_first_lane_batch() -> None:
    job = FakeJob()
    job.run([Item("x", 1, rounds=1), Item("y", 4)], batch_size=2)
    lanes = [(e[1], e[3]) for e in job.events if e[0] == "batch"]
    # x's summary runs right after the batch that completed x, before y's last windows.
    assert lanes == [("window", (("x", 0), ("y", 0))), ("summary", ("x",)),
                     ("window", (("y", 1), ("y", 2))), ("window", (("y", 3),))]


def test_errors_outside_isolation_stop_the_job() -> None:
    class Interrupting(FakeJob):
        def run_batch(self, lane: str, payloads: list[Any], number: int) -> list[str]:
            raise KeyboardInterrupt

    job = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        job.run([Item("a", 1)], batch_size=1)

    class CannotRecord(FakeJob):
        def finish(self, item: Item) -> None:
            raise OSError("disk full")

    job = CannotRecord()
    with pytest.raises(OSError, match="disk full"):
        job.run([Item("a", 1)], batch_size=1)
    assert job.failed == {}  # a write error is not blamed on the item


def test_wrong_result_count_fails_the_items_with_a_clear_message() -> None:
    class Short(FakeJob):
        def run_batch(self, lane: str, payloads: list[Any], number: int) -> list[str]:
            return []

    job = Short()
    job.run([Item("a", 1)], batch_size=1)
    assert "returned 0 results for 1 units" in job.failed["a"][0]
    with pytest.raises(ValueError, match="batch_size=0"):
        BatchEngine(job, 0)


def test_follow_ups_into_the_first_lane_are_run_before_the_end() -> None:
    class Again(FakeJob):
        """After its summary round an item asks for one more window (first lane)."""

        def follow_up(self, item: Item) -> list[tuple[str, Any]]:
            if item.done_rounds < item.rounds:
                return [("summary", item.name)]
            if len(item.results) == item.n:
                return [("window", (item.name, item.n))]
            return []

    job = Again()
    # batch_size 1: the summary is queued when reading ends and runs in the final drain,
    # whose follow-up then lands in the (empty) first lane.
    items = [Item("a", 1, rounds=1)]
    job.run(items, batch_size=1)
    assert dict(job.finished) == {"a": 1}
    assert items[0].results == {0: "a:0", 1: "a:1"}
