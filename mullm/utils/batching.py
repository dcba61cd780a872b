"""The windowed batching engine shared by batch captioning and feature extraction.

A job has many *items* (audio files). Each item is read lazily into *units* (its windows),
and units of different items are batched together, up to ``batch_size``, through the
job's batch function (an LLM's ``generate``, an encoder's forward). When every unit of an
item is done the job may queue follow-up units for it (captioning's whole-track
summaries, in rounds); when there are none left the item is finished.

Guarantees, whatever the items contain:

- **isolation**: when a batch raises, each of its units is retried alone, so a bad unit
  fails only its own item; an item whose reading raises fails alone too; the job goes on;
- **exactly once**: every item ends in exactly one ``BatchJob.finish`` or
  ``BatchJob.fail`` call, and a failed item's queued units are dropped, never run;
- **bounded memory**: an item is read only as far as the queue needs (a unit is queued,
  then full batches run), so a 20-minute file never sits in memory whole;
- **determinism**: batches are numbered in run order across lanes (a failed batch's
  retries keep its number), so a job can derive per-batch seeds from the number.

A job may have several *lanes* (queues with their own batch function): ``lanes[0]`` takes
what ``read`` yields; the other lanes take follow-up units and are run to empty after every
batch of the first lane, so work unlocked by a batch is done at once (a killed job loses
only the batch in flight) rather than when a full batch of it has gathered.

Exceptions from ``finish`` and ``fail`` (writing the job's output) are never isolated: a
job that cannot record results must stop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

ItemT = TypeVar("ItemT")
_END = object()  # marks the end of an item's units


@dataclass(eq=False)
class _Entry:
    """The engine's bookkeeping for one item."""

    item: Any
    outstanding: int = 0  # queued or running units
    reading: bool = True  # its ``read`` iterator may still yield units
    closed: bool = False  # finished or failed: nothing more happens to it


@dataclass(eq=False)
class Unit:
    """One piece of an item's work: the lane it runs in and the job's payload."""

    lane: str
    payload: Any
    entry: _Entry = field(repr=False)

    @property
    def item(self) -> Any:
        """The item this unit belongs to."""
        return self.entry.item


class BatchJob(ABC, Generic[ItemT]):
    """What a job gives the engine: how to read items, run batches and record results."""

    #: Lane names; ``lanes[0]`` takes the units ``read`` yields.
    lanes: tuple[str, ...] = ("main",)

    @abstractmethod
    def read(self, item: ItemT) -> Iterable[Any]:
        """The payloads of ``item``'s units for ``lanes[0]``, produced lazily. Raising
        (while creating the iterable or during iteration) fails the item."""

    @abstractmethod
    def run_batch(self, lane: str, payloads: list[Any], number: int) -> Sequence[Any]:
        """Run one batch of ``lane``; return one result per payload, in order. ``number``
        counts batches from 0 in run order (retries of a failed batch keep its number)."""

    @abstractmethod
    def store(self, item: ItemT, unit: Unit, result: Any) -> None:
        """Keep one unit's result. Raising fails the item."""

    def follow_up(self, item: ItemT) -> list[tuple[str, Any]]:
        """Called whenever every unit of ``item`` queued so far is done: more
        ``(lane, payload)`` units to run, or nothing when the item is complete. Raising
        fails the item."""
        return []

    @abstractmethod
    def finish(self, item: ItemT) -> None:
        """Record a completed item (called exactly once per successful item)."""

    @abstractmethod
    def fail(self, item: ItemT, error: BaseException, unit: Unit | None) -> None:
        """Record a failed item (called exactly once per failed item). ``unit`` is the
        unit whose batch failed, or None when reading the item or its bookkeeping did."""


class BatchEngine:
    """Runs a ``BatchJob`` over items: lazy reading, cross-item batches, isolation.

    Args:
        job: the job.
        batch_size: most units per batch (>= 1).
        isolate: exception types that fail one item instead of stopping the job;
            anything else (KeyboardInterrupt, a job's own bug if excluded) propagates.

    Raises:
        ValueError: ``batch_size`` < 1 or the job has no lanes.
    """

    def __init__(self, job: BatchJob, batch_size: int,
                 isolate: tuple[type[BaseException], ...] = (Exception,)) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if not job.lanes:
            raise ValueError(f"{type(job).__name__}.lanes is empty: a job needs one lane")
        self.job = job
        self.batch_size = batch_size
        self.isolate = isolate
        self.batches = 0  # batches run so far (the next batch's number)
        self._unsettled = 0  # items read but not yet finished or failed
        self._queues: dict[str, list[Unit]] = {lane: [] for lane in job.lanes}

    def run(self, items: Iterable[Any]) -> None:
        """Process every item; returns when each has been finished or failed.

        Raises:
            RuntimeError: an item was neither finished nor failed (an engine bug: never
                lose an item silently).
        """
        for item in items:
            self._unsettled += 1
            self._read(_Entry(item))
        self._drain(final=True)
        if self._unsettled:
            raise RuntimeError(f"batching engine: {self._unsettled} item(s) neither "
                               "finished nor failed")

    # ------------------------------------------------------------------ reading
    def _read(self, entry: _Entry) -> None:
        units = self._units_of(entry)
        if units is not None:
            try:
                while not entry.closed:
                    payload = self._next(entry, units)
                    if payload is _END:
                        break
                    self._push(entry, self.job.lanes[0], payload)
                    self._drain(final=False)
            finally:
                close = getattr(units, "close", None)
                if close is not None:
                    close()  # a generator stopped early (its item failed) releases its file
        entry.reading = False
        self._settle(entry)

    def _units_of(self, entry: _Entry) -> Iterator[Any] | None:
        """The item's unit iterator, or None when creating it failed the item."""
        try:
            return iter(self.job.read(entry.item))
        except self.isolate as exc:
            self._fail(entry, exc, None)
            return None

    def _next(self, entry: _Entry, units: Iterator[Any]) -> Any:
        """The next payload, or ``_END`` when the item is read or its reading failed.
        Only reading is guarded here: errors of the batches it triggers are not the
        item's (they are isolated per unit, or they stop the job)."""
        try:
            return next(units)
        except StopIteration:
            return _END
        except self.isolate as exc:
            self._fail(entry, exc, None)
            return _END

    def _push(self, entry: _Entry, lane: str, payload: Any) -> None:
        if lane not in self._queues:
            raise ValueError(f"{type(self.job).__name__}: unit for unknown lane {lane!r}; "
                             f"lanes are {list(self._queues)}")
        entry.outstanding += 1
        self._queues[lane].append(Unit(lane, payload, entry))

    # ------------------------------------------------------------------ batching
    def _drain(self, final: bool) -> None:
        """Run full batches of the first lane (any batch, until every lane is empty, when
        ``final``), each followed by the follow-up lanes run to empty."""
        first = self._queues[self.job.lanes[0]]
        while True:
            while first and (final or len(first) >= self.batch_size):
                self._run(self.job.lanes[0], self._take(self.job.lanes[0]))
                self._run_follow_ups()
            if not final:
                return
            self._run_follow_ups()  # follow-ups may queue first-lane units again
            if not first:
                return

    def _run_follow_ups(self) -> None:
        later = self.job.lanes[1:]
        while any(self._queues[lane] for lane in later):
            for lane in later:
                while self._queues[lane]:
                    self._run(lane, self._take(lane))

    def _take(self, lane: str) -> list[Unit]:
        queue = self._queues[lane]
        batch = queue[:self.batch_size]
        del queue[:self.batch_size]
        return batch

    def _call(self, lane: str, units: list[Unit], number: int) -> list[Any]:
        results = list(self.job.run_batch(lane, [u.payload for u in units], number))
        if len(results) != len(units):
            raise RuntimeError(f"{type(self.job).__name__}.run_batch({lane!r}) returned "
                               f"{len(results)} results for {len(units)} units")
        return results

    def _run(self, lane: str, units: list[Unit]) -> None:
        number = self.batches
        self.batches += 1
        try:
            results = self._call(lane, units, number)
        except self.isolate as exc:
            if len(units) == 1:
                self._fail(units[0].entry, exc, units[0])
                return
            # Retry alone so that only the unit that breaks the batch fails its item.
            for unit in units:
                if unit.entry.closed:
                    continue
                try:
                    self._deliver([unit], self._call(lane, [unit], number))
                except self.isolate as one:
                    self._fail(unit.entry, one, unit)
            return
        self._deliver(units, results)

    def _deliver(self, units: list[Unit], results: list[Any]) -> None:
        touched: dict[int, _Entry] = {}
        for unit, result in zip(units, results):
            entry = unit.entry
            if entry.closed:
                continue
            try:
                self.job.store(entry.item, unit, result)
            except self.isolate as exc:
                self._fail(entry, exc, unit)
                continue
            entry.outstanding -= 1
            touched.setdefault(id(entry), entry)
        for entry in touched.values():
            self._settle(entry)

    # ------------------------------------------------------------------ completion
    def _settle(self, entry: _Entry) -> None:
        """Queue an item's follow-ups, or finish it, once all its units are done."""
        if entry.closed or entry.reading or entry.outstanding:
            return
        try:
            more = list(self.job.follow_up(entry.item))
        except self.isolate as exc:
            self._fail(entry, exc, None)
            return
        if more:
            for lane, payload in more:
                self._push(entry, lane, payload)
            return
        entry.closed = True
        self._unsettled -= 1
        self.job.finish(entry.item)

    def _fail(self, entry: _Entry, error: BaseException, unit: Unit | None) -> None:
        if entry.closed:
            return
        entry.closed = True
        self._unsettled -= 1
        for queue in self._queues.values():
            queue[:] = [u for u in queue if u.entry is not entry]  # in place: drains hold it
        self.job.fail(entry.item, error, unit)
