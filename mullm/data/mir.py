"""Labels for unlabelled audio: tempo and beats, key, chords (librosa + key profiles).

* tempo / beats: ``librosa.beat.beat_track`` (dynamic-programming beat tracker, Ellis 2007);
* key: mean chroma (``librosa.feature.chroma_cqt``) correlated with the 24 rotations of the
  Temperley (default: it scored best on our rendered clips, see docs/data.md) or
  Krumhansl-Kessler key profiles (Krumhansl-Schmuckler key finding);
* chords: beat-synchronous chroma matched to 24 major/minor triad templates, a simple
  template matcher (no maintained chord recogniser installs offline: madmom does not build on
  Python 3.11 / numpy 2, essentia installs but is AGPL-licensed; we do not depend on either).

:func:`mullm.eval.mir_labels.evaluate_mir` measures all of this against a rendered corpus
with exact labels (MIREX key score and tempo relations from ``mir_eval``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mullm.utils.music import KEY_PROFILES, MODES, PITCH_NAMES, tempo_class

SAMPLE_RATE = 22050
DEFAULT_PROFILE = "temperley"


def _librosa():
    try:
        import librosa
    except ImportError as e:
        raise ImportError("MIR labels need librosa: pip install librosa") from e
    return librosa


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 audio at ``sample_rate``: ``mullm.audio.load_audio``, so every format
    the rest of mullm reads (MP3, M4A, WMA ... to their true end) is read here too.

    Raises:
        AudioError: the file is missing, not audio, truncated or damaged (naming it).
    """
    from mullm.audio import load_audio as _load

    return _load(path, sample_rate)


def estimate_tempo(y: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[float, np.ndarray]:
    """(tempo in BPM, beat times in seconds)."""
    lb = _librosa()
    tempo, beats = lb.beat.beat_track(y=y, sr=sr, units="time")
    return float(np.atleast_1d(tempo)[0]), np.asarray(beats, dtype=float)


def chroma(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(12, frames) CQT chroma, C first."""
    return _librosa().feature.chroma_cqt(y=y, sr=sr)


def key_scores(pcp: np.ndarray, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """(24,) correlations of a 12-bin pitch-class profile with C..B major then C..B minor."""
    prof = KEY_PROFILES[profile]
    out = np.zeros(24)
    for mi, mode in enumerate(MODES):
        p = np.asarray(prof[mode], dtype=float)
        for t in range(12):
            out[mi * 12 + t] = np.corrcoef(pcp, np.roll(p, t))[0, 1]
    return out


def estimate_key(y: np.ndarray, sr: int = SAMPLE_RATE, profile: str = DEFAULT_PROFILE,
                 chroma_frames: np.ndarray | None = None) -> tuple[str, str, float]:
    """(tonic name, mode, correlation) by Krumhansl-Schmuckler key finding."""
    c = chroma(y, sr) if chroma_frames is None else chroma_frames
    s = key_scores(c.mean(axis=1), profile)
    i = int(np.argmax(s))
    return PITCH_NAMES[i % 12], ("major" if i < 12 else "minor"), float(s[i])


def estimate_chords(y: np.ndarray, sr: int = SAMPLE_RATE, beats: np.ndarray | None = None,
                    chroma_frames: np.ndarray | None = None) -> list[tuple[float, float, str]]:
    """(start_s, end_s, label) per beat span, labels like 'A:min' or 'N' (no chord)."""
    lb = _librosa()
    c = chroma(y, sr) if chroma_frames is None else chroma_frames
    hop = 512
    if beats is None:
        beats = estimate_tempo(y, sr)[1]
    frames = lb.time_to_frames(beats, sr=sr, hop_length=hop)
    frames = np.unique(np.clip(frames, 0, c.shape[1] - 1))
    sync = lb.util.sync(c, frames, aggregate=np.median)
    bounds = np.concatenate([[0], frames, [c.shape[1]]])
    templates, names = [], []
    for t in range(12):
        for q, iv in (("maj", (0, 4, 7)), ("min", (0, 3, 7))):
            v = np.zeros(12)
            v[[(t + i) % 12 for i in iv]] = 1
            templates.append(v / np.linalg.norm(v))
            names.append(f"{PITCH_NAMES[t]}:{q}")
    T = np.array(templates)
    out = []
    for j in range(sync.shape[1]):
        v = sync[:, j]
        n = np.linalg.norm(v)
        label = "N" if n < 1e-6 else names[int(np.argmax(T @ (v / n)))]
        start = lb.frames_to_time(bounds[j], sr=sr, hop_length=hop)
        end = lb.frames_to_time(bounds[j + 1], sr=sr, hop_length=hop)
        if end > start:
            out.append((float(start), float(end), label))
    # merge repeats
    merged: list[tuple[float, float, str]] = []
    for s, e, lab in out:
        if merged and merged[-1][2] == lab:
            merged[-1] = (merged[-1][0], e, lab)
        else:
            merged.append((s, e, lab))
    return merged


def analyze(path: str | os.PathLike, *, profile: str = DEFAULT_PROFILE, chords: bool = True
            ) -> dict:
    """Estimated labels of one file, in ``metadata.jsonl`` shape (unknown fields absent)."""
    y = load_audio(path)
    bpm, beats = estimate_tempo(y)
    c = chroma(y)
    tonic, mode, conf = estimate_key(y, chroma_frames=c, profile=profile)
    row = {"key": tonic, "mode": mode, "tempo_bpm": round(bpm, 1),
           "tempo_class": tempo_class(bpm), "duration_s": round(len(y) / SAMPLE_RATE, 3),
           "mir": {"key_confidence": round(conf, 3), "beats": [round(b, 3) for b in beats],
                   "library": f"librosa {_librosa().__version__}", "key_profile": profile}}
    if chords:
        row["mir"]["chords"] = [[round(s, 3), round(e, 3), lab] for s, e, lab in
                                estimate_chords(y, beats=beats, chroma_frames=c)]
    return row


def label_folder(folder: str | os.PathLike, rel_to: str | os.PathLike, *,
                 profile: str = DEFAULT_PROFILE, errors_path: str | os.PathLike | None = None
                 ) -> list[dict]:
    """Metadata rows with estimated key/mode/tempo for every audio file under ``folder``.

    Every file is tried (``mullm.data.manifest``'s folder rule: the decoder decides what is
    audio); one that cannot be read or analysed goes to ``errors_path`` and the rest go on.
    Ids are paths relative to ``folder`` without their extension (with it, when two files
    differ only in their extension).
    """
    from mullm.data.manifest import read_manifest
    from mullm.data.schema import append_errors

    folder, rel_to = Path(folder), Path(rel_to)
    rows, used = [], set()
    for item in read_manifest(folder):
        p = Path(item.path)
        rid = str(Path(item.id).with_suffix(""))
        rid = item.id if rid in used else rid
        used.add(rid)
        try:
            row = analyze(p, profile=profile, chords=False)
        except Exception as e:  # noqa: BLE001 - recorded; the batch goes on
            if errors_path is not None:
                append_errors(errors_path, [{"input": str(p), "error":
                                             f"{type(e).__name__}: {e}"}])
            continue
        rows.append({"id": rid, "audio": os.path.relpath(p.resolve(), rel_to.resolve()),
                     **row, "source": "mir"})
    return rows
