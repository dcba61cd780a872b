"""MusicBench-style audio augmentation that keeps labels true.

* ``pitch`` by n semitones (librosa phase-vocoder stretch + soxr resampling): ``key`` moves
  by n, ``mode`` stays;
* ``stretch`` by a rate r (> 1 is faster, phase vocoder): ``tempo_bpm`` x r,
  ``tempo_class`` recomputed, ``duration_s`` / r;
* ``gain`` in dB and ``noise`` at an SNR in dB: no label changes.

Each augmented clip is a new WAV and a new row with a new ``id`` and an ``augmentation``
field ("pitch+2", "stretch1.10", "gain-6", "noise20"); ``piece`` and ``split`` are kept, so an
augmented clip never crosses a split.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mullm.utils.music import PITCH_NAMES, pitch_class, tempo_class


def pitch_shift(y: np.ndarray, sr: int, n_steps: float) -> np.ndarray:
    """Shift pitch by ``n_steps`` semitones, same length."""
    import librosa

    return librosa.effects.pitch_shift(y, sr=sr, n_steps=float(n_steps)).astype(np.float32)


def time_stretch(y: np.ndarray, rate: float) -> np.ndarray:
    """Play ``rate`` times faster (phase vocoder), pitch unchanged."""
    import librosa

    if rate <= 0:
        raise ValueError(f"stretch rate must be > 0, got {rate}")
    return librosa.effects.time_stretch(y, rate=float(rate)).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise at ``snr_db`` below the signal's power."""
    p = float(np.mean(y.astype(np.float64) ** 2)) or 1e-12
    noise = rng.standard_normal(len(y)) * np.sqrt(p / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def parse_op(op: str) -> tuple[str, float]:
    """'pitch:+2' / 'stretch:1.1' / 'gain:-6' / 'noise:20' -> (kind, amount)."""
    kind, _, amount = op.partition(":")
    if kind not in ("pitch", "stretch", "gain", "noise") or not amount:
        raise ValueError(f"augmentation {op!r} must be pitch:N, stretch:R, gain:DB or noise:SNR")
    return kind, float(amount)


def op_name(kind: str, amount: float) -> str:
    """The ``augmentation`` tag: 'pitch+2', 'stretch1.10', 'gain-6', 'noise20'."""
    if kind == "pitch":
        return f"pitch{int(amount):+d}"
    if kind == "stretch":
        return f"stretch{amount:.2f}"
    return f"{kind}{amount:+g}" if kind == "gain" else f"{kind}{amount:g}"


def augment_row(row: dict, y: np.ndarray, sr: int, kind: str, amount: float,
                rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """(new row, new audio) for one augmentation; labels updated as the audio changed."""
    new = dict(row)
    if kind == "pitch":
        if amount != int(amount):
            raise ValueError(f"pitch shifts must be whole semitones, got {amount}")
        out = pitch_shift(y, sr, amount)
        if row.get("key"):
            new["key"] = PITCH_NAMES[(pitch_class(row["key"]) + int(amount)) % 12]
    elif kind == "stretch":
        out = time_stretch(y, amount)
        if row.get("tempo_bpm"):
            new["tempo_bpm"] = round(row["tempo_bpm"] * amount, 2)
            new["tempo_class"] = tempo_class(new["tempo_bpm"])
    elif kind == "gain":
        out = (y * np.float32(10 ** (amount / 20))).astype(np.float32)
    elif kind == "noise":
        out = add_noise(y, amount, rng)
    else:
        raise ValueError(f"unknown augmentation {kind!r}")
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.999:  # keep 16-bit output from clipping
        out = out * np.float32(0.999 / peak)
    tag = op_name(kind, amount)
    new["id"] = f"{row['id']}-{tag}"
    new["duration_s"] = round(len(out) / sr, 3)
    new["augmentation"] = tag
    return new, out


def augment_metadata(metadata: str | os.PathLike, out: str | os.PathLike, ops: list[str], *,
                     seed: int = 0, include_original: bool = True) -> tuple[Path, int, int]:
    """Write augmented clips under ``out``'s folder and a metadata JSONL at ``out``.

    Returns (path, clips written, failures); failures go to ``errors.jsonl`` beside ``out``.
    """
    import soundfile as sf

    from mullm.data.corpus import read_metadata
    from mullm.data.schema import append_errors

    metadata, out = Path(metadata), Path(out)
    out_dir = out.parent
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    parsed = [parse_op(o) for o in ops]
    rows = read_metadata(metadata)
    rng = np.random.default_rng(seed)
    new_rows, failures = [], 0
    for row in rows:
        src = metadata.parent / row["audio"]
        if include_original:
            new_rows.append({**row, "audio": os.path.relpath(src.resolve(), out_dir.resolve())})
        try:
            y, sr = sf.read(str(src), dtype="float32", always_2d=True)
            y = y.mean(axis=1)
        except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
            append_errors(out_dir / "errors.jsonl", [{"input": str(src), "error": str(e)}])
            failures += 1
            continue
        for kind, amount in parsed:
            try:
                nrow, audio = augment_row(row, y, sr, kind, amount, rng)
                rel = f"audio/{nrow['id']}.wav"
                sf.write(out_dir / rel, audio, sr, subtype="PCM_16")
                nrow["audio"] = rel
                new_rows.append(nrow)
            except Exception as e:  # noqa: BLE001
                append_errors(out_dir / "errors.jsonl", [{"input": f"{row['id']} {kind}:{amount}",
                                                          "error": f"{type(e).__name__}: {e}"}])
                failures += 1
    with open(out, "w") as f:
        for r in new_rows:
            f.write(json.dumps(r) + "\n")
    return out, len(new_rows), failures
