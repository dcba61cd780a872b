"""Spectrogram images of what the model heard (numpy STFT + Pillow; no plotting library).

The picture shows the waveform at the model's sample rate, i.e. after mono mix-down and
resampling, so a user sees the input as the encoder gets it. Window boundaries of a long clip
are drawn as vertical lines, and the part that was not used is dimmed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Anchor colours of a dark-to-bright map (close to matplotlib's "magma"), interpolated.
_ANCHORS = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104],
                     [254, 159, 109], [252, 253, 191]], dtype=np.float32)
MAX_FRAMES = 1600  # STFT frames computed at most: the image is ~800 px wide anyway
DB_RANGE = 80.0    # dB below the loudest bin that still gets a colour


def _colour(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (H, W) to RGB uint8 (H, W, 3)."""
    x = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    frac = (x - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[hi] * frac).astype(np.uint8)


def log_spectrogram(wave: np.ndarray, sample_rate: int, n_fft: int = 1024) -> np.ndarray:
    """Log-magnitude spectrogram (freq bins, frames) in dB relative to its maximum, on a
    logarithmic frequency axis from 40 Hz to Nyquist (what music looks right on).

    Args:
        wave: mono float samples (N,).
        sample_rate: Hz.
        n_fft: FFT size in samples.

    Returns:
        (n_fft // 8, frames) float32 array with values in [-DB_RANGE, 0]; frames <= MAX_FRAMES.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    hop = max(n_fft // 4, int(np.ceil((wave.size - n_fft) / (MAX_FRAMES - 1))) or 1)
    starts = np.arange(0, wave.size - n_fft + 1, hop)
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[starts]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)).T
    db = 20 * np.log10(np.maximum(spec, 1e-10))
    db = np.maximum(db - db.max(), -DB_RANGE)
    # Resample the linear frequency axis onto log-spaced rows.
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    rows = np.geomspace(40.0, sample_rate / 2, n_fft // 8)
    out = np.empty((len(rows), db.shape[1]), dtype=np.float32)
    for j in range(db.shape[1]):
        out[:, j] = np.interp(rows, freqs, db[:, j])
    return out[::-1]  # high frequencies at the top of the image


def spectrogram_png(wave: np.ndarray, sample_rate: int, out: str | Path, *,
                    boundaries_s: list[float] | None = None,
                    used_s: tuple[float, float] | None = None,
                    size: tuple[int, int] = (720, 160)) -> Path:
    """Write a spectrogram picture of ``wave`` to ``out`` (PNG) and return its path.

    Args:
        wave: mono float samples (N,) at ``sample_rate`` Hz.
        boundaries_s: times (seconds) to mark with a vertical line (window edges).
        used_s: (start, end) seconds the model used; the rest is dimmed.
        size: (width, height) of the image in pixels.
    """
    from PIL import Image

    db = log_spectrogram(wave, sample_rate)
    rgb = _colour((db + DB_RANGE) / DB_RANGE)
    img = Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(img).copy()
    duration = max(len(wave) / sample_rate, 1e-9)
    width = size[0]
    if used_s is not None:
        a = int(round(used_s[0] / duration * width))
        b = int(round(used_s[1] / duration * width))
        mask = np.ones(width, dtype=bool)
        mask[max(a, 0):max(b, 0)] = False
        pixels[:, mask] = (pixels[:, mask] * 0.3).astype(np.uint8)
    for t in boundaries_s or []:
        x = int(round(t / duration * width))
        if 0 < x < width:
            pixels[:, x] = 255
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(out, compress_level=3)  # fast: a picture per update
    return out


def stack_pictures(items: list[tuple[Path, str]], out: str | Path, label_px: int = 28,
                   top_px: int = 44) -> Path:
    """Stack pictures (all ``spectrogram_png``'s width) into one PNG, each under its label.

    Args:
        items: (picture path, label) pairs, top to bottom; at least one.
        out: where to write the PNG.
        label_px: height of the white band holding each label.
        top_px: white margin on top (gradio draws the component's label there).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not items:
        raise ValueError("stack_pictures needs at least one picture")
    pictures = [(Image.open(p).convert("RGB"), label) for p, label in items]
    width = max(img.width for img, _ in pictures)
    height = top_px + sum(img.height + label_px for img, _ in pictures)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=18)
    y = top_px
    for img, label in pictures:
        draw.text((4, y + 4), label, fill=(20, 20, 20), font=font)
        sheet.paste(img, (0, y + label_px))
        y += img.height + label_px
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, compress_level=3)  # fast: a picture per update
    return out


__all__ = ["log_spectrogram", "spectrogram_png", "stack_pictures"]
