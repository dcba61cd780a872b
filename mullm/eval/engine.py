"""The evaluation engine: any ``EvalTask`` over its items, batched through the shared engine.

A task turns an item into *units* (one model query each: a condition x scorer of a
multiple-choice question, a caption to generate ...), runs batches of units of many items
(``run_batch``), and turns an item's unit results into one *record*. The shared windowed
engine (``mullm.utils.batching``) does the batching across items and the isolation: an item
whose audio is missing or broken, or whose batch fails alone, becomes an error record; every
item ends in exactly one record, handed to ``sink`` as soon as it is complete (the resumable
job writes it durably at once).
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mullm.utils.batching import BatchEngine, BatchJob, Unit


@dataclass
class EvalUnit:
    """One model query of an item: ``kind`` selects how it is run (the task's batch groups
    units by kind), ``key`` names its result in the record, ``data`` is the task's."""

    kind: str
    key: str
    data: Any


class EvalTask(ABC):
    """What a task gives the evaluation engine."""

    #: The task's name in records and reports ("mcq", "caption", "qa", "mir").
    name: str = ""

    @abstractmethod
    def item_id(self, item: Any) -> str:
        """The item's id (unique within the task's items)."""

    @abstractmethod
    def units(self, item: Any) -> tuple[Any, list[EvalUnit]]:
        """Load what the item needs (its audio) and list its queries: ``(state, units)``.
        Raising fails the item (an error record)."""

    @abstractmethod
    def run(self, kind: str, units: list[EvalUnit]) -> list[Any]:
        """Run a batch of units of one ``kind``; one result per unit, in order."""

    @abstractmethod
    def record(self, item: Any, state: Any, results: dict[str, Any]) -> dict[str, Any]:
        """The item's record from its units' results (keyed by ``EvalUnit.key``)."""

    def error_record(self, item: Any, error: str) -> dict[str, Any]:
        """The record of an item that failed (audio missing or broken, a batch that fails
        alone): ``{"id", "task", "error"}`` and whatever else the task adds."""
        return {"id": self.item_id(item), "task": self.name, "error": error}


@dataclass(eq=False)
class _Pending:
    state: Any = None
    results: dict[str, Any] = field(default_factory=dict)


class _Job(BatchJob):
    """Adapts an ``EvalTask`` to the shared engine's ``BatchJob``."""

    def __init__(self, task: EvalTask, sink: Callable[[dict[str, Any]], None]) -> None:
        self.task, self.sink = task, sink
        self.pending: dict[int, _Pending] = {}

    def read(self, item: Any) -> Iterable[Any]:
        state, units = self.task.units(item)
        self.pending[id(item)] = _Pending(state)
        return units

    def run_batch(self, lane: str, payloads: list[Any], number: int) -> list[Any]:
        out: list[Any] = [None] * len(payloads)
        kinds: dict[str, list[int]] = {}
        for i, u in enumerate(payloads):
            kinds.setdefault(u.kind, []).append(i)
        for kind, idx in kinds.items():
            results = list(self.task.run(kind, [payloads[i] for i in idx]))
            if len(results) != len(idx):
                raise RuntimeError(f"task {self.task.name!r} returned {len(results)} results "
                                   f"for {len(idx)} {kind!r} units")
            for i, r in zip(idx, results):
                out[i] = r
        return out

    def store(self, item: Any, unit: Unit, result: Any) -> None:
        self.pending[id(item)].results[unit.payload.key] = result

    def finish(self, item: Any) -> None:
        p = self.pending.pop(id(item))
        self.sink(self.task.record(item, p.state, p.results))

    def fail(self, item: Any, error: BaseException, unit: Unit | None) -> None:
        self.pending.pop(id(item), None)
        where = f" ({unit.payload.key})" if unit is not None else ""
        msg = f"{type(error).__name__}: {error}{where}"
        if not isinstance(error, (ValueError, OSError, RuntimeError)):
            # An unexpected exception type: keep the place it came from for the bug report.
            msg += " | " + "".join(traceback.format_exception(error)[-2:]).strip()
        self.sink(self.task.error_record(item, msg))


def run_task(task: EvalTask, items: list[Any], sink: Callable[[dict[str, Any]], None],
             batch_size: int = 16) -> int:
    """Run ``task`` over ``items``, ``batch_size`` units per batch; ``sink`` gets one record
    per item as it completes. Returns the number of batches run.

    Raises:
        ValueError: ``batch_size`` < 1.
        Exception: whatever ``sink`` raises (a job that cannot record results stops).
    """
    engine = BatchEngine(_Job(task, sink), batch_size)
    engine.run(items)
    return engine.batches


__all__ = ["EvalTask", "EvalUnit", "run_task"]
