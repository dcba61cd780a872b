"""Batch captioning: many audio files -> one JSONL record each, resumable and shardable.

The job (``mullm caption``, ``tools/caption.py``) and the Python API (``caption_files``)
share one engine, ``Captioner``:

- every track is read window by window (``mullm.audio.iter_audio_windows``: bounded memory,
  every second covered), and the windows of all tracks are batched together through
  ``MusicLLM.generate`` (left padding, KV cache, media encoded once at prefill);
- a track longer than one window gets a whole-track caption made by the LLM from its
  segment captions, in text (``summary="llm"``), or the segment captions joined with time
  stamps (``summary="concat"``); see docs/captioning.md;
- a bad file becomes a record with ``error`` set and the job goes on.

The output file is written so that SIGKILL at any moment loses at most the batch in flight:
each record is one ``os.write`` of a whole line followed by ``fsync``; on start a trailing
partial line is cut away; ``--retry-failed`` first rewrites the file without its failed
records (write to a temporary file, fsync, rename). A sidecar ``FILE.jsonl.meta.json``
holds the model fingerprint and the settings, and a resume with different ones is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mullm.errors import AudioError, DataError, MullmError

if TYPE_CHECKING:
    import numpy as np

    from mullm.model import MusicLLM

DEFAULT_PROMPT = "Describe this music."
# The whole-track summary prompt (text only: the LLM reads its own segment captions).
SUMMARY_PROMPT = (
    "Here are descriptions of consecutive parts of one music track, with their times:\n"
    "{segments}\n"
    "Describe the whole track in one or two sentences."
)
# Segment captions per summary prompt; more are summarised in rounds (groups of this many,
# then a summary of the group summaries), so the prompt stays well inside the LLM's context.
SUMMARY_GROUP = 8
META_SUFFIX = ".meta.json"
FORMAT = "mullm.caption/1"
RECORD_KEYS = ("id", "path", "caption", "segments", "error", "duration_s", "model", "prompt",
               "generation")


class CaptionJobError(MullmError, ValueError):
    """The job cannot run as asked (settings differ from the file's, bad shard spec ...)."""


# ----------------------------------------------------------------------------- settings


@dataclass
class GenerationSettings:
    """Everything that changes what the captions say; stored with every record."""

    max_new_tokens: int = 64
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    window_s: float | None = None
    hop_s: float | None = None
    summary: str = "llm"
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse values that cannot work, naming the flag."""
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens={self.max_new_tokens}: must be >= 1")
        if self.num_beams < 1:
            raise ValueError(f"--num-beams={self.num_beams}: must be >= 1")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"--temperature={self.temperature}: must be > 0 when sampling")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p={self.top_p}: must be in (0, 1]")
        if self.window_s is not None and self.window_s <= 0:
            raise ValueError(f"--window-s={self.window_s}: must be > 0")
        if self.hop_s is not None:
            if self.hop_s <= 0:
                raise ValueError(f"--hop-s={self.hop_s}: must be > 0")
            if self.window_s is not None and self.hop_s > self.window_s:
                raise ValueError(f"--hop-s={self.hop_s} > --window-s={self.window_s} would "
                                 "skip audio; use a hop <= the window")
        if self.summary not in ("llm", "concat"):
            raise ValueError(f"summary={self.summary!r}: choose 'llm' or 'concat'")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MusicLLM.generate``."""
        kw: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                                  num_beams=self.num_beams, temperature=self.temperature,
                                  top_p=self.top_p)
        kw.update(self.extra)
        return kw

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (``extra`` only when used)."""
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


@dataclass
class CaptionStats:
    """Counts and times for the final summary table."""

    items: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    previously_succeeded: int = 0

    def table(self) -> str:
        """A small fixed-width table for the end of a job."""
        rate = self.audio_s / self.wall_s if self.wall_s > 0 else 0.0
        per_item = (self.succeeded + self.failed) / self.wall_s if self.wall_s > 0 else 0.0
        rows = [
            ("items", f"{self.items}"),
            ("already done (skipped)", f"{self.skipped}"),
            ("succeeded", f"{self.succeeded}"),
            ("failed", f"{self.failed}"),
            ("audio hours", f"{self.audio_s / 3600:.3f}"),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("throughput", f"{rate:.1f} s audio / s, {per_item:.2f} items / s"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ----------------------------------------------------------------------------- inputs


@dataclass
class CaptionItem:
    """One input: its id (path relative to the input root) and its file."""

    id: str
    path: str


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()))


def _hf_dataset_items(root: Path, audio_column: str = "audio") -> list[CaptionItem]:
    """Items of a local ``datasets`` folder (``save_to_disk`` layout). Embedded audio bytes
    are written once to ``$MULLM_CACHE/caption-inputs`` (named by content hash, so a resume
    finds the same file); ids are ``split/row``."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{root}: is a Hugging Face datasets folder; reading it needs the optional "
            "package 'datasets' (pip install datasets)"
        ) from None
    from mullm.llm import cache_root

    loaded = datasets.load_from_disk(str(root))
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    cache = cache_root() / "caption-inputs"
    items = []
    for split, ds in splits.items():
        if audio_column not in ds.column_names:
            raise DataError(f"{root}{'/' + split if split else ''}: no {audio_column!r} "
                            f"column (columns: {ds.column_names})")
        # Read the raw Arrow column: no decoding (datasets' own decoder needs torchcodec).
        column = ds.data.column(audio_column)
        for i in range(len(ds)):
            value = column[i].as_py()
            rid = f"{split}/{i}" if split else str(i)
            if isinstance(value, str):
                value = {"path": value, "bytes": None}
            if not isinstance(value, dict):
                raise DataError(f"{root}: row {rid}: {audio_column!r} is {type(value).__name__}"
                                ", expected an Audio feature or a path")
            raw, src = value.get("bytes"), value.get("path")
            if raw:
                digest = hashlib.sha256(raw).hexdigest()
                suffix = Path(src).suffix if src and Path(src).suffix else ".wav"
                dest = cache / digest[:2] / f"{digest}{suffix}"
                if not dest.is_file():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _atomic_write_bytes(dest, raw)
                items.append(CaptionItem(rid, str(dest)))
            elif src:
                p = Path(src)
                items.append(CaptionItem(rid, str(p if p.is_absolute() else root / p)))
            else:
                raise DataError(f"{root}: row {rid}: audio has neither bytes nor a path")
    return items


def resolve_inputs(specs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[CaptionItem]:
    """Files, folders, globs, manifests and HF ``datasets`` folders -> unique items, sorted
    by id."""
    from mullm.data.manifest import read_manifest

    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    specs = [str(s) for s in specs]
    if not specs:
        raise DataError("no inputs given")
    items: list[CaptionItem] = []
    plain = [s for s in specs if not _is_hf_dataset(Path(s))]
    for s in specs:
        if _is_hf_dataset(Path(s)):
            items.extend(_hf_dataset_items(Path(s)))
    if plain:
        items.extend(CaptionItem(m.id, m.path) for m in read_manifest(plain))
    by_id: dict[str, CaptionItem] = {}
    for item in items:
        prev = by_id.get(item.id)
        if prev is not None and prev.path != item.path:
            raise DataError(f"two inputs have the same id {item.id!r}: {prev.path} and "
                            f"{item.path}; caption them into separate --out files")
        by_id[item.id] = item
    return [by_id[k] for k in sorted(by_id)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based i) -> (i, n)."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise CaptionJobError(f"--shard {text!r}: expected i/n, e.g. 0/4 (0-based)") from None
    if n < 1 or not 0 <= i < n:
        raise CaptionJobError(f"--shard {text!r}: need n >= 1 and 0 <= i < n (shards are "
                              f"0-based: 0/{max(n, 1)} .. {max(n, 1) - 1}/{max(n, 1)})")
    return i, n


def shard_of(item_id: str, count: int) -> int:
    """The shard an id belongs to: a stable hash, so adding files never moves old ones."""
    return int(hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:12], 16) % count


def select_shard(items: list[CaptionItem], index: int, count: int) -> list[CaptionItem]:
    """The items of shard ``index`` of ``count``."""
    return [it for it in items if shard_of(it.id, count) == index]


# ----------------------------------------------------------------------------- model identity


def model_fingerprint(model: MusicLLM) -> str:
    """Hash of what decides the captions: the config, the base weights' fingerprint and
    every trained tensor (adapters, gates, LoRA)."""
    import torch
    import yaml

    from mullm.config import to_dict

    h = hashlib.sha256()
    h.update(yaml.safe_dump(to_dict(model.config), sort_keys=True).encode())
    h.update(str(model.base_fingerprint).encode())
    state = model.trainable_state_dict()
    for name, p in model.llm.named_parameters():
        if "lora_" in name:
            state[f"lora.{name}"] = p.detach().cpu()
    for k in sorted(state):
        t = state[k].contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        # Hash raw bytes (bf16 has no numpy dtype: view it as int16).
        arr = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- output file


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a trailing partial line (no final newline) left by a killed writer; returns the
    number of bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Scan back in blocks for the last newline.
        pos, block = size, 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a caption file (complete lines only), naming file:line on bad JSON."""
    path = Path(path)
    out = []
    if not path.is_file():
        return out
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # a partial last line: not a record (repair_tail removes it)
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not a valid caption record ({exc.msg}); the "
                                "file was edited or damaged") from None
            if not isinstance(rec, dict) or "id" not in rec:
                raise DataError(f"{path}:{n}: not a caption record (no 'id')")
            out.append(rec)
    return out


def _encode_record(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def rewrite_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Atomically replace a caption file with ``records``."""
    _atomic_write_bytes(Path(path), b"".join(_encode_record(r) for r in records))


class RecordWriter:
    """Appends one record per line: one ``os.write`` of the whole line, then ``fsync``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fd = os.open(str(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, rec: dict[str, Any]) -> None:
        """Append ``rec`` durably."""
        data = _encode_record(rec)
        view = memoryview(data)
        while view:  # a regular file takes it whole; the loop only guards short writes
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def meta_path(out: str | os.PathLike) -> Path:
    """The sidecar next to a caption file."""
    return Path(str(out) + META_SUFFIX)


def _settings_key(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("model_fingerprint", "prompt", "generation")}


def _describe_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = []
    for k in ("model_fingerprint", "prompt"):
        if old.get(k) != new.get(k):
            diffs.append(f"{k}: file has {old.get(k)!r}, this run {new.get(k)!r}")
    og, ng = old.get("generation") or {}, new.get("generation") or {}
    for k in sorted(set(og) | set(ng)):
        if og.get(k) != ng.get(k):
            diffs.append(f"generation.{k}: file has {og.get(k)!r}, this run {ng.get(k)!r}")
    if old.get("shard") != new.get("shard"):
        diffs.append(f"shard: file has {old.get('shard')!r}, this run {new.get('shard')!r}")
    return "; ".join(diffs)


@contextlib.contextmanager
def _job_lock(out: Path) -> Iterator[None]:
    """One writer per output file (a second job on the same --out is refused)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    lock = Path(str(out) + ".lock")
    fd = os.open(str(lock), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CaptionJobError(f"{out}: another caption job is writing this file "
                                  f"(lock {lock}); wait for it or use another --out") from None
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the engine


@dataclass
class _Track:
    item: CaptionItem
    duration_s: float = 0.0
    segments: dict[int, tuple[float, float, str]] = field(default_factory=dict)
    n_windows: int | None = None  # known once every window has been read
    silent: list[bool] = field(default_factory=list)
    error: str | None = None
    done: bool = False
    summary_texts: list[str] | None = None


@dataclass
class _Segment:
    track: _Track
    index: int
    start_s: float
    end_s: float
    wave: np.ndarray


@dataclass
class _TextJob:
    track: _Track
    texts: list[str]
    slot: int  # position in the track's next round


def _fmt_time(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}:{sec:02d}"


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (AudioError, DataError)):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:500]


class Captioner:
    """Captions tracks with a ``MusicLLM``: windows batched across tracks, a whole-track
    summary per long track, and one record per track through ``on_record``."""

    def __init__(self, model: MusicLLM, prompt: str = DEFAULT_PROMPT, batch_size: int = 8,
                 settings: GenerationSettings | None = None, model_name: str | None = None
                 ) -> None:
        if "audio" not in model.config.modalities:
            raise CaptionJobError("the model has no audio modality; captioning needs one "
                                  f"(it has {sorted(model.config.modalities)})")
        if batch_size < 1:
            raise ValueError(f"--batch-size={batch_size}: must be >= 1")
        self.model = model
        self.prompt = prompt
        self.batch_size = batch_size
        self.settings = settings or GenerationSettings()
        self.settings.validate()
        enc_cfg = model.config.modalities["audio"].encoder
        enc = model.encoders["audio"]
        self.sample_rate = int(enc.sample_rate)
        if self.settings.window_s:
            # A window given for this job: its hop defaults to the window, not the config's.
            self.window_s = float(self.settings.window_s)
            self.hop_s = float(self.settings.hop_s or self.window_s)
        else:
            self.window_s = float(enc_cfg.window_s or enc_cfg.max_duration_s)
            self.hop_s = float(self.settings.hop_s or enc_cfg.hop_s or self.window_s)
        if self.hop_s > self.window_s:
            raise ValueError(f"hop {self.hop_s} s > window {self.window_s} s would skip audio")
        self.min_duration_s = float(enc_cfg.min_duration_s)
        self.model_name = model_name or str(model.config.llm.name_or_path)
        self._batches = 0

    # -------------------------------------------------------------- records
    def generation_record(self) -> dict[str, Any]:
        """The ``generation`` field: settings with the resolved window and hop."""
        g = self.settings.to_dict()
        g["window_s"], g["hop_s"] = self.window_s, self.hop_s
        return g

    def _record(self, track: _Track) -> dict[str, Any]:
        gen = self.generation_record()
        warnings = []
        if track.error is None and track.silent and all(track.silent):
            warnings.append("silent: the audio is below -60 dBFS throughout; the caption "
                            "describes silence or is unreliable")
        gen["warnings"] = warnings
        segs = [] if track.error else [
            {"start_s": round(s, 3), "end_s": round(e, 3), "caption": c}
            for _, (s, e, c) in sorted(track.segments.items())]
        caption = None
        if track.error is None:
            caption = track.summary_texts[0] if track.summary_texts else segs[0]["caption"]
        return {"id": track.item.id, "path": track.item.path, "caption": caption,
                "segments": segs, "error": track.error,
                "duration_s": round(track.duration_s, 3) if track.duration_s else None,
                "model": self.model_name, "prompt": self.prompt, "generation": gen}

    # -------------------------------------------------------------- windows
    def _windows(self, track: _Track) -> Iterator[_Segment]:
        import numpy as np

        from mullm.audio import audio_info, is_silent, iter_audio_windows

        info = audio_info(track.item.path)
        track.duration_s = info.duration_s
        min_samples = self.min_duration_s * self.sample_rate
        pending: _Segment | None = None
        n = 0
        for w in iter_audio_windows(track.item.path, self.sample_rate, self.window_s,
                                    self.hop_s, min_duration_s=self.min_duration_s):
            if pending is not None and len(w.wave) < min_samples:
                # A last window shorter than the encoder's minimum joins the previous one
                # (a little longer than the window) instead of being captioned alone.
                extra = round(max(0.0, w.end_s - pending.end_s) * self.sample_rate)
                if extra:
                    pending.wave = np.concatenate([pending.wave, w.wave[len(w.wave) - extra:]])
                pending.end_s = max(pending.end_s, w.end_s)
                continue
            if pending is not None:
                pending.index = n
                track.silent.append(is_silent(pending.wave))
                yield pending
                n += 1
            pending = _Segment(track, n, w.start_s, w.end_s, w.wave)
        if pending is not None:
            pending.index = n
            track.silent.append(is_silent(pending.wave))
            yield pending
            n += 1
        track.n_windows = n

    # -------------------------------------------------------------- generation
    def _generate(self, conversations: list[list[dict]], media: list[dict] | None
                  ) -> list[str | BaseException]:
        """One batched call; on failure, retry one by one so a bad item fails alone."""
        kw = self.settings.generate_kwargs()
        seed = self.settings.seed
        # A per-batch seed derived from the job seed: deterministic for the same inputs
        # and batch size, and batches do not all draw the same random numbers.
        batch_seed = None if seed is None else seed + 1_000_003 * self._batches
        self._batches += 1
        try:
            return list(self.model.generate_text(conversations, media, seed=batch_seed, **kw))
        except Exception as exc:  # noqa: BLE001 - isolated below, never swallowed
            if len(conversations) == 1:
                return [exc]
        out: list[str | BaseException] = []
        for i, conv in enumerate(conversations):
            try:
                out.extend(self.model.generate_text(
                    [conv], None if media is None else [media[i]], seed=batch_seed, **kw))
            except Exception as exc:  # noqa: BLE001 - becomes this item's error record
                out.append(exc)
        return out

    def run(self, items: list[CaptionItem], on_record: Callable[[dict[str, Any]], None]
            ) -> None:
        """Caption ``items``; ``on_record`` receives each finished record (any order)."""
        segs: list[_Segment] = []
        texts: list[_TextJob] = []
        tracks = [_Track(item) for item in items]

        def fail(track: _Track, exc: BaseException | str) -> None:
            if track.done:
                return
            track.error = exc if isinstance(exc, str) else _short_error(exc)
            track.done = True
            on_record(self._record(track))

        def finish(track: _Track) -> None:
            track.done = True
            on_record(self._record(track))

        def after_segments(track: _Track) -> None:
            """Once every window of a track has its caption: finish or queue its summary."""
            if track.done or track.n_windows is None or len(track.segments) < track.n_windows:
                return
            if track.n_windows == 1:
                finish(track)
                return
            lines = [f"[{_fmt_time(s)}-{_fmt_time(e)}] {c}"
                     for _, (s, e, c) in sorted(track.segments.items())]
            if self.settings.summary == "concat":
                track.summary_texts = ["\n".join(lines)]
                finish(track)
                return
            queue_summary(track, lines)

        def queue_summary(track: _Track, lines: list[str]) -> None:
            groups = [lines[i:i + SUMMARY_GROUP] for i in range(0, len(lines), SUMMARY_GROUP)]
            track.summary_texts = [None] * len(groups)  # type: ignore[list-item]
            for slot, group in enumerate(groups):
                texts.append(_TextJob(track, group, slot))

        def run_segments(batch: list[_Segment]) -> None:
            batch = [s for s in batch if not s.track.done]
            if not batch:
                return
            conv = [[{"role": "user", "content": self.prompt}] for _ in batch]
            media = [{"audio": [s.wave]} for s in batch]
            results = self._generate(conv, media)
            for s, r in zip(batch, results):
                if isinstance(r, BaseException):
                    fail(s.track, f"generation failed on {_fmt_time(s.start_s)}-"
                                  f"{_fmt_time(s.end_s)}: {_short_error(r)}")
                else:
                    s.track.segments[s.index] = (s.start_s, s.end_s, r)
            for t in {id(s.track): s.track for s in batch}.values():
                after_segments(t)

        def run_texts(batch: list[_TextJob]) -> None:
            batch = [j for j in batch if not j.track.done]
            if not batch:
                return
            conv = [[{"role": "user", "content": SUMMARY_PROMPT.format(
                segments="\n".join(j.texts))}] for j in batch]
            results = self._generate(conv, None)
            for j, r in zip(batch, results):
                if isinstance(r, BaseException):
                    fail(j.track, f"summary failed: {_short_error(r)}")
                    continue
                j.track.summary_texts[j.slot] = r  # type: ignore[index]
            for t in {id(j.track): j.track for j in batch}.values():
                if t.done or any(x is None for x in t.summary_texts or [None]):
                    continue
                if len(t.summary_texts) == 1:
                    finish(t)
                else:  # another round: summarise the group summaries
                    queue_summary(t, [f"[part {i + 1}] {x}" for i, x in
                                      enumerate(t.summary_texts)])

        def drain(final: bool) -> None:
            while segs and (final or len(segs) >= self.batch_size):
                batch, segs[:] = segs[:self.batch_size], segs[self.batch_size:]
                run_segments(batch)
                # Summaries unlocked by this batch run now, not when a batch of them has
                # gathered: a killed job then loses only the work in flight.
                while texts:
                    tb, texts[:] = texts[:self.batch_size], texts[self.batch_size:]
                    run_texts(tb)
            while final and texts:
                tb, texts[:] = texts[:self.batch_size], texts[self.batch_size:]
                run_texts(tb)

        for track in tracks:
            windows = self._windows(track)
            while not track.done:
                try:
                    seg = next(windows)
                except StopIteration:
                    after_segments(track)  # all its windows may already be captioned
                    break
                except Exception as exc:  # noqa: BLE001 - a bad file becomes its error record
                    segs[:] = [s for s in segs if s.track is not track]
                    fail(track, exc)
                    break
                segs.append(seg)
                drain(final=False)
        while segs or texts:
            drain(final=True)


# ----------------------------------------------------------------------------- API + job


def caption_files(model: MusicLLM, paths: str | os.PathLike | Iterable[str | os.PathLike],
                  prompt: str = DEFAULT_PROMPT, batch_size: int = 8, max_new_tokens: int = 64,
                  do_sample: bool = False, num_beams: int = 1, temperature: float = 1.0,
                  top_p: float = 1.0, seed: int | None = None, window_s: float | None = None,
                  hop_s: float | None = None, summary: str = "llm",
                  model_name: str | None = None, **gen_kwargs: Any) -> list[dict[str, Any]]:
    """Caption files, folders, globs or manifests in memory; records in input (id) order."""
    items = resolve_inputs(paths)
    settings = GenerationSettings(max_new_tokens, do_sample, num_beams, temperature, top_p,
                                  seed, window_s, hop_s, summary, dict(gen_kwargs))
    cap = Captioner(model, prompt, batch_size, settings, model_name)
    got: dict[str, dict[str, Any]] = {}
    cap.run(items, lambda r: got.__setitem__(r["id"], r))
    return [got[it.id] for it in items]


def run_caption_job(model: MusicLLM, inputs: list[str], out: str | os.PathLike,
                    prompt: str = DEFAULT_PROMPT, batch_size: int = 8,
                    settings: GenerationSettings | None = None,
                    shard: tuple[int, int] | None = None, retry_failed: bool = False,
                    model_name: str | None = None, progress: bool | None = None,
                    log: Callable[[str], None] | None = None) -> CaptionStats:
    """The resumable job behind ``mullm caption``; returns the counts for the summary."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.time()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cap = Captioner(model, prompt, batch_size, settings, model_name)
    items = resolve_inputs(inputs)
    if shard is not None:
        items = select_shard(items, *shard)
    meta = {"format": FORMAT, "model": cap.model_name,
            "model_fingerprint": model_fingerprint(model), "prompt": prompt,
            "generation": cap.generation_record(),
            "shard": f"{shard[0]}/{shard[1]}" if shard else None}
    stats = CaptionStats(items=len(items))
    with _job_lock(out):
        cut = repair_tail(out)
        if cut:
            log(f"{out}: removed a partial last line ({cut} bytes) left by an interrupted run")
        records = read_records(out)
        mpath = meta_path(out)
        if records:
            old = _load_meta(mpath, records)
            if _settings_key(old) != _settings_key(meta) or old.get("shard") != meta["shard"]:
                raise CaptionJobError(
                    f"{out} was written with other settings, so its records cannot be mixed "
                    f"with this run's ({_describe_diff(old, meta)}); rerun with the same "
                    "model and settings to resume, or write to a new --out file"
                )
        # Keep one record per id: a success beats a failure, else the first one.
        best: dict[str, dict[str, Any]] = {}
        for r in records:
            prev = best.get(r["id"])
            if prev is None or (prev.get("error") and not r.get("error")):
                best[r["id"]] = r
        failed = {k for k, r in best.items() if r.get("error")}
        if len(best) != len(records) or (retry_failed and failed):
            keep = [r for r in best.values() if not (retry_failed and r.get("error"))]
            rewrite_records(out, keep)
            if retry_failed and failed:
                log(f"{out}: retrying {len(failed)} failed item(s)")
            best = {r["id"]: r for r in keep}
        _atomic_write_bytes(mpath, (json.dumps(meta, indent=2) + "\n").encode())
        wanted = {it.id for it in items}
        stats.previously_succeeded = sum(1 for k, r in best.items()
                                         if k in wanted and not r.get("error"))
        todo = [it for it in items if it.id not in best]
        stats.skipped = len(items) - len(todo)
        if stats.skipped:
            log(f"{out}: {stats.skipped} of {len(items)} item(s) already done, "
                f"{len(todo)} to go")
        writer = RecordWriter(out)
        bar = _progress(len(todo), progress)
        try:
            def on_record(rec: dict[str, Any]) -> None:
                writer.write(rec)
                if rec["error"]:
                    stats.failed += 1
                else:
                    stats.succeeded += 1
                    stats.audio_s += rec["duration_s"] or 0.0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ok=stats.succeeded, failed=stats.failed,
                                    audio_h=f"{stats.audio_s / 3600:.2f}", refresh=False)

            cap.run(todo, on_record)
        finally:
            writer.close()
            if bar is not None:
                bar.close()
    stats.wall_s = time.time() - t0
    return stats


def _load_meta(mpath: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The file's settings: its sidecar, or (sidecar lost) its first record."""
    if mpath.is_file():
        try:
            return json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise CaptionJobError(f"{mpath}: damaged settings file ({exc.msg}); delete it to "
                                  "resume using the records' own settings") from None
    first = records[0]
    raise CaptionJobError(
        f"{mpath} is missing, so the model fingerprint of the records in "
        f"{mpath.name[:-len(META_SUFFIX)]} is unknown (they say model {first.get('model')!r}, "
        f"prompt {first.get('prompt')!r}); restore the file or write to a new --out"
    )


def _progress(total: int, enabled: bool | None) -> Any:
    if enabled is False or total == 0:
        return None
    from tqdm.auto import tqdm

    # enabled=None: show the bar only on a terminal (logs and CI stay clean).
    return tqdm(total=total, unit="track", desc="captioning", dynamic_ncols=True,
                disable=None if enabled is None else False, smoothing=0.1)


# ----------------------------------------------------------------------------- merging


def merge_shards(out: str | os.PathLike, shard_files: list[str | os.PathLike],
                 allow_incomplete: bool = False) -> dict[str, Any]:
    """Join shard caption files into ``out``: same settings everywhere, no duplicate ids.
    Returns a summary dict (records, failed, shards seen, missing shards)."""
    if not shard_files:
        raise CaptionJobError("caption-merge needs at least one shard file")
    out = Path(out)
    metas, all_records = [], []
    seen: dict[str, str] = {}
    dups = []
    for f in shard_files:
        f = Path(f)
        if not f.is_file():
            raise CaptionJobError(f"{f}: shard file not found")
        if f.resolve() == out.resolve():
            raise CaptionJobError(f"{f}: the output file cannot also be an input")
        records = read_records(f)
        mp = meta_path(f)
        if not mp.is_file():
            raise CaptionJobError(f"{mp}: missing; cannot check that {f} was made with the "
                                  "same model and settings as the other shards")
        meta = json.loads(mp.read_text())
        if metas and _settings_key(meta) != _settings_key(metas[0][1]):
            raise CaptionJobError(
                f"{f} was made with other settings than {metas[0][0]}: "
                f"{_describe_diff(metas[0][1], meta)}")
        metas.append((f, meta))
        for r in records:
            if r["id"] in seen:
                dups.append(f"{r['id']!r} ({seen[r['id']]} and {f})")
            seen[r["id"]] = str(f)
            all_records.append(r)
    if dups:
        raise CaptionJobError(f"duplicate ids across shards: {', '.join(dups[:10])}"
                              f"{' ...' if len(dups) > 10 else ''}; were shards listed twice "
                              "or made with different --shard counts?")
    shards = sorted({m.get("shard") for _, m in metas if m.get("shard")})
    missing: list[str] = []
    counts = {int(s.split("/")[1]) for s in shards}
    if len(counts) > 1:
        raise CaptionJobError(f"shards of different counts cannot be merged: {shards}")
    if counts:
        n = counts.pop()
        missing = [f"{i}/{n}" for i in range(n) if f"{i}/{n}" not in shards]
        if missing and not allow_incomplete:
            raise CaptionJobError(f"shard(s) {missing} are missing; pass them too, or "
                                  "--allow-incomplete to merge what there is")
    all_records.sort(key=lambda r: r["id"])
    rewrite_records(out, all_records)
    meta = dict(metas[0][1])
    meta["shard"] = None
    meta["merged_from"] = [str(f) for f, _ in metas]
    _atomic_write_bytes(meta_path(out), (json.dumps(meta, indent=2) + "\n").encode())
    return {"records": len(all_records),
            "failed": sum(1 for r in all_records if r.get("error")),
            "shards": shards, "missing": missing}


__all__ = [
    "DEFAULT_PROMPT", "SUMMARY_PROMPT", "CaptionItem", "CaptionJobError", "CaptionStats",
    "Captioner", "GenerationSettings", "caption_files", "merge_shards", "model_fingerprint",
    "parse_shard", "read_records", "repair_tail", "resolve_inputs", "rewrite_records",
    "run_caption_job", "select_shard", "shard_of",
]
