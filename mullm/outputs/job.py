"""``mullm generate-music``: batch music generation, resumable like captioning.

``OUT/records.jsonl`` gets one JSON record per request and ``OUT/audio/<id>.wav`` one clip per
successful request. Every WAV is written to a temporary name and renamed before its record
is appended (one ``write`` + ``fsync`` per line, the captioning job's ``RecordWriter``), so a
job killed at any moment resumes without losing or duplicating a clip: requests with a
record are skipped (failed ones too, unless ``retry_failed``), a partial last line is cut, a
WAV without a record is simply written again. ``OUT/job.json`` holds the settings; resuming
with another model, mode or generation settings is refused. A bad request (no prompt, an
unreadable input clip, a failed generation) becomes a record with ``error`` set; the job goes
on.

Modes: ``projector``: the LLM answers the request (with the generation prefix of the config,
if any); when the reply lacks the output tokens they are appended (``tokens_emitted: false``
says so; ``require_tokens`` makes it an error instead), and the decoder is conditioned on the
projector output at those tokens. ``text``: the decoder is prompted with the request itself
through its own text encoder (the plain text-to-music baseline; no LLM runs).

Record: ``{"id", "prompt", "input_audio", "mode", "reply", "tokens_emitted", "audio",
"sample_rate", "duration_s", "error", "model", "generation"}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mullm.errors import DataError, MullmError
from mullm.model_io import model_fingerprint
from mullm.utils.records import (
    RecordJobStats,
    RecordWriter,
    keep_records,
    read_records,
    repair_tail,
)

if TYPE_CHECKING:
    from mullm.model import MusicLLM

FORMAT = "mullm-generate-music/1"
RECORDS, SETTINGS, AUDIO_DIR = "records.jsonl", "job.json", "audio"


class MusicJobError(MullmError, ValueError):
    """The job cannot run as asked (other settings in OUT, another job writing it)."""


@dataclass
class MusicRequest:
    """One request: a prompt, optionally an input clip to edit; ``error`` when unusable."""

    id: str
    prompt: str
    input_audio: str | None = None
    error: str | None = None


@dataclass
class MusicJobStats(RecordJobStats):
    """Counts for the summary line, and the failed requests' errors."""

    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, rec: dict[str, Any]) -> None:
        """Count one new record; keep a failure's error for the summary."""
        super().count(rec)
        if rec["error"]:
            self.errors.append(f"{rec['id']}: {rec['error']}")

    def table(self) -> str:
        """A one-screen summary."""
        return (f"requests {self.requests}: {self.succeeded} generated, {self.failed} failed, "
                f"{self.skipped} already done; {self.audio_s:.1f} s of audio in "
                f"{self.wall_s:.1f} s")


def request_id(prompt: str, input_audio: str | None = None) -> str:
    """A stable id from the request's content (the same request resumes as itself)."""
    key = json.dumps([prompt, input_audio])
    return "req-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def read_requests(prompts: list[str] | None = None, requests_file: str | os.PathLike | None = None
                  ) -> list[MusicRequest]:
    """Requests from ``--prompt`` texts and a file: JSONL (``{"id"?, "prompt", "audio"?}``;
    audio paths relative to the file) or plain text (one prompt per line). A line that cannot
    be read becomes a request with ``error`` set, so it gets an error record.

    Raises:
        FileNotFoundError: the requests file does not exist.
        MusicJobError: two requests with one id.
    """
    out = [MusicRequest(request_id(p), p) for p in prompts or []]
    if requests_file is not None:
        path = Path(requests_file)
        if not path.is_file():
            raise FileNotFoundError(f"requests file {path} does not exist")
        jsonl = path.suffix.lower() in (".jsonl", ".json")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            if not jsonl:
                out.append(MusicRequest(request_id(line.strip()), line.strip()))
                continue
            out.append(_json_request(line, path, n))
    seen: dict[str, int] = {}
    for i, r in enumerate(out):
        if r.id in seen:
            raise MusicJobError(f"requests {seen[r.id]} and {i} have the same id {r.id!r} "
                                "(the same prompt and input twice?); give each a distinct id")
        seen[r.id] = i
    return out


def _json_request(line: str, path: Path, n: int) -> MusicRequest:
    where = f"{path}:{n}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return MusicRequest(f"{path.name}:{n}", "", error=f"{where}: malformed JSON ({exc.msg})")
    if not isinstance(obj, dict):
        return MusicRequest(f"{path.name}:{n}", "", error=f"{where}: expected an object")
    prompt, audio = obj.get("prompt"), obj.get("audio")
    rid = obj.get("id")
    if audio is not None and isinstance(audio, str) and not os.path.isabs(audio):
        audio = str(path.parent / audio)
    if not isinstance(prompt, str) or not prompt.strip():
        return MusicRequest(str(rid or f"{path.name}:{n}"), "",
                            error=f"{where}: 'prompt' must be non-empty text, got {prompt!r}")
    if audio is not None and not isinstance(audio, str):
        return MusicRequest(str(rid or f"{path.name}:{n}"), prompt,
                            error=f"{where}: 'audio' must be a path, got {audio!r}")
    return MusicRequest(str(rid) if rid else request_id(prompt, audio), prompt.strip(), audio)


# ------------------------------------------------------------------------ files


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write`` a temporary sibling of ``path`` (same suffix), then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One job per output folder: a second one on the same OUT is refused."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    fd = os.open(str(out / ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MusicJobError(f"{out}: another generate-music job is writing here") from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ the job


class MusicJob:
    """Generates clips for requests in one mode and writes them to ``out`` (module doc)."""

    def __init__(self, model: MusicLLM, out: str | os.PathLike, mode: str | None = None,
                 duration_s: float | None = None, seed: int | None = None,
                 max_new_tokens: int = 64, require_tokens: bool = False,
                 model_name: str | None = None) -> None:
        if "music" not in model.outputs:
            raise MusicJobError("the model has no music_output section: nothing can make "
                                "music (add one to its config, see docs/music-output.md)")
        self.model = model
        self.cfg = model.outputs["music"].config
        self.mode = mode or self.cfg.mode
        if self.mode not in ("projector", "text"):
            raise MusicJobError(f"mode={self.mode!r}: choose 'projector' or 'text'")
        self.out = Path(out)
        self.duration_s = float(duration_s or self.cfg.decoder.duration_s)
        self.seed = seed if seed is not None else self.cfg.decoder.seed
        self.max_new_tokens = max_new_tokens
        self.require_tokens = require_tokens
        self.model_name = model_name or str(model.config.llm.name_or_path)

    def settings(self) -> dict[str, Any]:
        """What decides the clips: recorded in job.json and with every record."""
        return {"mode": self.mode, "duration_s": self.duration_s, "seed": self.seed,
                "max_new_tokens": self.max_new_tokens, "require_tokens": self.require_tokens,
                "decoder": asdict(self.cfg.decoder) | {"duration_s": self.duration_s,
                                                        "seed": self.seed},
                "generation_prefix": self.cfg.generation_prefix}

    def _record(self, req: MusicRequest, **fields: Any) -> dict[str, Any]:
        rec = {"id": req.id, "prompt": req.prompt, "input_audio": req.input_audio,
               "mode": self.mode, "reply": None, "tokens_emitted": None, "audio": None,
               "sample_rate": None, "duration_s": None, "error": None,
               "model": self.model_name, "generation": self.settings()}
        rec.update(fields)
        return rec

    def _generate(self, req: MusicRequest) -> tuple[np.ndarray, int, dict[str, Any]]:
        """One clip for one request: (waveform, sample rate, record fields)."""
        from mullm.outputs.render import reply_conditions
        from mullm.outputs.vocab import apply_task_prefix, output_token_text

        decoder = self.model.outputs["music"].decoder
        if self.mode == "text":
            wave = decoder.generate_from_text([req.prompt], self.duration_s, self.seed)[0]
            return wave, decoder.sample_rate, {}
        media = {"audio": [req.input_audio]} if req.input_audio else {}
        text = f"<audio> {req.prompt}" if req.input_audio else req.prompt
        conv = apply_task_prefix([{"role": "user", "content": text}],
                                 self.cfg.generation_prefix)
        reply = self.model.generate_text([conv], [media], max_new_tokens=self.max_new_tokens,
                                         seed=self.seed)[0]
        tokens = output_token_text(self.cfg.num_tokens)
        emitted = tokens in reply
        if not emitted:
            if self.require_tokens:
                raise ValueError(f"the model's reply has no output tokens ({tokens}): "
                                 f"{reply!r}")
            reply = f"{reply} {tokens}".strip()
        cond = reply_conditions(self.model, conv + [{"role": "assistant", "content": reply}],
                                media)[-1:]
        wave = decoder.generate_from_condition(cond, self.duration_s, self.seed)[0]
        return wave, decoder.sample_rate, {"reply": reply, "tokens_emitted": emitted}

    def run(self, requests: list[MusicRequest], retry_failed: bool = False,
            log: Callable[[str], None] | None = None) -> MusicJobStats:
        """Generate every request that has no record yet; returns the counts."""
        log = log or (lambda msg: print(msg, file=sys.stderr))
        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / AUDIO_DIR).mkdir(exist_ok=True)
        stats = MusicJobStats(requests=len(requests))
        records_path = self.out / RECORDS
        meta = {"format": FORMAT, "model": self.model_name,
                "model_fingerprint": model_fingerprint(self.model), **self.settings()}
        with _exclusive(self.out):
            for stale in (self.out / AUDIO_DIR).glob(".*.wav"):  # a write a kill cut short
                stale.unlink()
            if repair_tail(records_path):
                log(f"{records_path}: removed a partial last line left by an interrupted run")
            done = self._resume(records_path, meta, retry_failed)
            todo = [r for r in requests if r.id not in done]
            stats.skipped = len(requests) - len(todo)
            if stats.skipped:
                log(f"{self.out}: {stats.skipped} of {len(requests)} request(s) already done")
            writer = RecordWriter(records_path)
            try:
                for req in todo:
                    rec = self._one(req)
                    writer.write(rec)
                    stats.count(rec)
            finally:
                writer.close()
        stats.wall_s = time.time() - t0
        return stats

    def _one(self, req: MusicRequest) -> dict[str, Any]:
        if req.error:
            return self._record(req, error=req.error)
        try:
            wave, sr, fields = self._generate(req)
        except Exception as exc:  # noqa: BLE001 - a bad request becomes its error record
            return self._record(req, error=f"{type(exc).__name__}: {exc}")
        from mullm.audio import write_wav

        rel = f"{AUDIO_DIR}/{req.id}.wav"
        _atomic_write(self.out / rel, lambda tmp: write_wav(tmp, wave, sr))
        return self._record(req, audio=rel, sample_rate=sr,
                            duration_s=round(len(wave) / sr, 6), **fields)

    def _resume(self, records_path: Path, meta: dict[str, Any], retry_failed: bool
                ) -> set[str]:
        """Ids already done (refusing other settings); failed ones dropped with
        ``retry_failed``."""
        records = read_records(records_path)
        settings_path = self.out / SETTINGS
        if records:
            if not settings_path.is_file():
                raise MusicJobError(f"{settings_path} is missing, so the settings of the "
                                    f"records in {records_path} are unknown; restore it or use "
                                    "another --out")
            old = json.loads(settings_path.read_text())
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            if diff:
                raise MusicJobError(
                    f"{self.out} holds clips made with other settings ({', '.join(diff)} "
                    "differ); rerun with the same model and settings to resume, or use "
                    "another --out")
        _atomic_write(settings_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
        return set(keep_records(records_path, records, retry_failed))


def run_music_job(model: MusicLLM, requests: list[MusicRequest], out: str | os.PathLike,
                  **kwargs: Any) -> MusicJobStats:
    """Build a ``MusicJob`` (keyword arguments as its constructor, plus ``retry_failed``) and
    run it."""
    retry = bool(kwargs.pop("retry_failed", False))
    return MusicJob(model, out, **kwargs).run(requests, retry_failed=retry)


def load_records(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a generate-music folder (complete lines only).

    Raises:
        DataError: a damaged records file (file:line).
    """
    path = Path(out) / RECORDS
    if not path.is_file():
        raise DataError(f"{path} does not exist: not a generate-music output folder")
    return read_records(path)


__all__ = ["FORMAT", "MusicJob", "MusicJobError", "MusicJobStats", "MusicRequest",
           "load_records", "read_requests", "request_id", "run_music_job"]
