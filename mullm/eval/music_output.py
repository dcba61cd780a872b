"""Projector conditioning against text prompting, side by side on the same requests.

``compare_conditioning`` runs the resumable generate-music job twice into ``OUT/projector``
and ``OUT/text`` (the same requests, seed and duration), then scores both:

* CLAP score: the cosine between each clip's CLAP audio embedding and the CLAP text embedding
  of its request, through the project's CLAP encoder (``mullm.encoders.clap.HFClapEncoder``:
  ``pooled`` for audio, ``embed_text`` for text, from one transformers CLAP checkpoint such
  as ``laion/larger_clap_music``); per request and as the mean per mode;
* FAD, when reference audio is given: the Fréchet audio distance between the reference clips
  and each mode's clips, by the maintained ``frechet-audio-distance`` package with its CLAP
  embedding model read from a local folder (``music_audioset_epoch_15_esc_90.14.pt``). When
  the package or the checkpoint is not there, the report says what is missing and the FAD
  fields stay null: no number is made up.

On tiny random stand-ins the numbers mean nothing; the run exercises every step. With real
weights it is the comparison M2UGen never published.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mullm.outputs.job import MusicRequest, load_records, run_music_job

if TYPE_CHECKING:
    from mullm.model import MusicLLM

MODES = ("projector", "text")
FAD_SUBMODEL = "music_audioset"
FAD_CHECKPOINT = "music_audioset_epoch_15_esc_90.14.pt"


def load_clap(checkpoint: str | os.PathLike) -> Any:
    """The project's CLAP encoder (pooled output) from a transformers CLAP checkpoint."""
    from mullm.config import EncoderConfig
    from mullm.encoders import build_encoder

    return build_encoder(EncoderConfig(name="clap", checkpoint=str(checkpoint),
                                       options={"output": "pooled"}))


@torch.no_grad()
def clap_scores(clap: Any, texts: list[str], clips: list[tuple[np.ndarray, int]]) -> list[float]:
    """Cosine between each clip (waveform, sample rate) and its text, in CLAP's joint space.

    Raises:
        ValueError: ``texts`` and ``clips`` of different lengths.
    """
    from mullm.audio import resample

    if len(texts) != len(clips):
        raise ValueError(f"{len(texts)} texts for {len(clips)} clips")
    if not texts:
        return []
    waves = [torch.from_numpy(resample(np.asarray(w, np.float32), sr, clap.sample_rate).copy())
             for w, sr in clips]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    audio = clap.pooled(batch, lengths)
    text = clap.embed_text(texts)
    return [float(x) for x in (audio * text).sum(-1)]


def fad_score(reference_dir: str | os.PathLike, generated_dir: str | os.PathLike,
              model_dir: str | os.PathLike | None) -> tuple[float | None, str | None]:
    """(FAD, None), or (None, what is missing) when it cannot be computed honestly here.

    Uses ``frechet_audio_distance.FrechetAudioDistance`` with CLAP (``music_audioset``) at
    48 kHz and ``ckpt_dir=model_dir``; the checkpoint must already be in ``model_dir`` (the
    package would otherwise download it). The package reports its own failures as -1, which
    is turned into a message, never a score.
    """
    try:
        from frechet_audio_distance import FrechetAudioDistance
    except Exception as exc:  # noqa: BLE001 - any import failure means: not available here
        return None, (f"FAD needs the frechet-audio-distance package, which does not import "
                      f"here ({type(exc).__name__}: {exc}); install it (pip install "
                      "frechet-audio-distance; it needs torchaudio and encodec) to get FAD")
    if model_dir is None:
        return None, (f"FAD needs its embedding model from a local folder: pass the folder "
                      f"holding {FAD_CHECKPOINT} (LAION-CLAP music) as the FAD model dir")
    ckpt = Path(model_dir) / FAD_CHECKPOINT
    if not ckpt.is_file():
        return None, (f"{ckpt} is missing: download {FAD_CHECKPOINT} from "
                      "https://huggingface.co/lukewys/laion_clap into that folder")
    fad = FrechetAudioDistance(ckpt_dir=str(model_dir), model_name="clap",
                               submodel_name=FAD_SUBMODEL, sample_rate=48000, verbose=False)
    score = float(fad.score(str(reference_dir), str(generated_dir)))
    if score < 0:
        return None, ("frechet-audio-distance returned -1 (it reports its own failures that "
                      f"way; see its log): {reference_dir} vs {generated_dir}")
    return score, None


def _load_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(1), int(sr)


def compare_conditioning(model: MusicLLM, requests: list[MusicRequest], out: str | os.PathLike,
                         clap_checkpoint: str | os.PathLike,
                         reference_dir: str | os.PathLike | None = None,
                         fad_model_dir: str | os.PathLike | None = None,
                         duration_s: float | None = None, seed: int | None = 0,
                         max_new_tokens: int = 64) -> dict[str, Any]:
    """Generate every request in both modes (resumable), score them, write
    ``OUT/comparison.json`` and return the report.

    Returns:
        {"requests", "clap_checkpoint", "modes": {mode: {"generated", "failed", "clap_mean",
        "fad"}}, "fad_missing", "per_request": [{"id", "prompt", "clap": {mode: score}}]}.
    """
    out = Path(out)
    clap = load_clap(clap_checkpoint)
    report: dict[str, Any] = {"requests": len(requests), "clap_checkpoint": str(clap_checkpoint),
                              "reference_dir": str(reference_dir) if reference_dir else None,
                              "modes": {}, "fad_missing": None}
    by_id: dict[str, dict[str, Any]] = {r.id: {"id": r.id, "prompt": r.prompt, "clap": {}}
                                        for r in requests}
    for mode in MODES:
        run_music_job(model, requests, out / mode, mode=mode, duration_s=duration_s,
                      seed=seed, max_new_tokens=max_new_tokens)
        records = [r for r in load_records(out / mode) if r["id"] in by_id]
        ok = [r for r in records if not r["error"]]
        clips = [_load_wav(out / mode / r["audio"]) for r in ok]
        scores = clap_scores(clap, [r["prompt"] for r in ok], clips)
        for r, s in zip(ok, scores):
            by_id[r["id"]]["clap"][mode] = s
        fad = None
        if reference_dir is not None:
            fad, missing = fad_score(reference_dir, out / mode / "audio", fad_model_dir)
            report["fad_missing"] = report["fad_missing"] or missing
        report["modes"][mode] = {"generated": len(ok), "failed": len(records) - len(ok),
                                 "clap_mean": float(np.mean(scores)) if scores else None,
                                 "fad": fad}
    if reference_dir is None:
        report["fad_missing"] = "no reference audio given: FAD needs a folder of reference clips"
    report["per_request"] = list(by_id.values())
    (out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A side-by-side table of the report."""
    lines = [f"{'mode':<10} {'clips':>6} {'failed':>6} {'CLAP':>8} {'FAD':>8}"]
    for mode, m in report["modes"].items():
        clap = "-" if m["clap_mean"] is None else f"{m['clap_mean']:.4f}"
        fad = "-" if m["fad"] is None else f"{m['fad']:.4f}"
        lines.append(f"{mode:<10} {m['generated']:>6} {m['failed']:>6} {clap:>8} {fad:>8}")
    if report.get("fad_missing"):
        lines.append(f"FAD: {report['fad_missing']}")
    return "\n".join(lines)


__all__ = ["FAD_CHECKPOINT", "clap_scores", "compare_conditioning", "fad_score",
           "format_report", "load_clap"]
