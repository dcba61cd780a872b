"""Hand-crafted spectral features: log-mel, chroma and onset strength. No weights.

The offline default encoder. Its three feature groups make the musical attributes of the
offline corpus learnable by a small adapter: timbre and instrumentation (log-mel), key and
harmony (chroma: STFT bins folded onto the 12 pitch classes) and tempo/rhythm (onset
strength: the positive spectral flux of the log-mel, read over time).

Layout of the single hidden-state layer (B, 1, T, D):
``[log-mel (n_mels) | chroma (12, C..B) | onset (1) | tempogram (lags) | key profiles (24)
| mode strength (2)]``.
The last groups are local summaries (over ``tempogram_s`` / ``key_window_s`` seconds
around each frame) that make tempo and key readable from a few pooled tokens: the
autocorrelation of the onset envelope at beat periods of 40-240 BPM, the correlation of
the windowed chroma with the 24 Temperley key profiles, and the best major and the best
minor correlation. The last pair is there because major/minor is a max over transpositions,
which a linear read of the 24 correlations cannot form (a linear probe on them stays at
chance for mode, while the sign of "best major - best minor" alone gets ~86% on the offline
corpus). Either window can be turned off (0).

Every feature is scaled by fixed constants (never batch statistics), so a clip's features do
not depend on what it is batched with, and frames past a clip's length are zero and do not
depend on the padding.

Frame ``t`` describes samples ``[t * hop, (t + 1) * hop)`` (hop = sample_rate / frame_rate);
its STFT window of ``n_fft`` samples is centred on that span, with zeros outside the clip.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.encoders.frames import hop_samples
from mullm.errors import ConfigError
from mullm.utils.music import MODES, TEMPERLEY

_DEFAULTS = {
    "n_mels": 64,
    "n_fft": 2048,
    "fmin": 0.0,
    "fmax": None,
    "chroma_fmin": 100.0,
    "chroma_fmax": 5000.0,
    # Rhythm: autocorrelation of the onset envelope over a window of this many seconds at
    # beat periods from 40 to 240 BPM (a tempogram); 0 turns it off.
    "tempogram_s": 4.0,
    # Tonality: correlation of the windowed chroma with the 24 Temperley key profiles
    # (C..B major, then C..B minor) over this many seconds, then the best major and the
    # best minor correlation; 0 turns it off.
    "key_window_s": 4.0,
}
_TEMPO_MIN_BPM = 40.0
_TEMPO_MAX_BPM = 240.0

# Fixed scaling constants, measured once on synthetic and rendered music at 16 kHz so that
# each feature group is roughly zero-mean, unit-scale on music (see docs/encoders.md).
_LOGMEL_FLOOR = 1e-10
_LOGMEL_SHIFT = 15.0
_LOGMEL_SCALE = 5.0
_ONSET_SCALE = 0.5


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
                   ) -> np.ndarray:
    """Triangular HTK-mel filters (n_mels, n_fft // 2 + 1), float32, with unit peaks
    (librosa's, ``htk=True, norm=None``)."""
    import librosa.filters  # imported here: ~2 s, paid only when a spectral encoder is built

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                               fmax=fmax, htk=True, norm=None, dtype=np.float32)


def chroma_filterbank(sample_rate: int, n_fft: int, fmin: float, fmax: float) -> np.ndarray:
    """Fold STFT bins onto 12 pitch classes C..B (12, n_fft // 2 + 1), float32: librosa's
    chroma filterbank (a Gaussian bump per pitch class as wide as the bin, in semitones;
    A440 tuning, no octave weighting), each bin's weights summing to 1, and zero for bins
    outside [fmin, fmax] Hz (and the DC bin)."""
    import librosa
    import librosa.filters

    fb = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, n_chroma=12, tuning=0.0,
                                octwidth=None, norm=1, base_c=True, dtype=np.float32)
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    keep = (freqs >= fmin) & (freqs <= fmax) & (freqs > 0)
    return fb * keep.astype(np.float32)


class SpectralEncoder(Encoder):
    """Log-mel + chroma + onset strength at ``frame_rate`` Hz from ``sample_rate`` audio."""

    modality = "audio"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        unknown = sorted(set(config.options) - set(_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"encoder.options: unknown spectral option(s) {unknown}; "
                f"known: {sorted(_DEFAULTS)}"
            )
        opts = {**_DEFAULTS, **config.options}
        self.sample_rate = int(config.sample_rate or 16000)
        self.frame_rate = float(config.frame_rate or 25.0)
        self.hop = hop_samples(self.sample_rate, self.frame_rate)
        self.n_fft = int(opts["n_fft"])
        self.n_mels = int(opts["n_mels"])
        if self.n_fft < self.hop:
            raise ConfigError(
                f"encoder.options.n_fft={self.n_fft} is shorter than one frame hop "
                f"({self.hop} samples); some samples would never be analysed"
            )
        if self.n_mels < 1:
            raise ConfigError(f"encoder.options.n_mels={self.n_mels} must be >= 1")
        fmax = float(opts["fmax"] or self.sample_rate / 2)
        self.tempo_window = int(round(float(opts["tempogram_s"]) * self.frame_rate))
        lo = max(1, int(math.floor(60.0 * self.frame_rate / _TEMPO_MAX_BPM)))
        hi = int(math.ceil(60.0 * self.frame_rate / _TEMPO_MIN_BPM))
        self.tempo_lags = list(range(lo, hi + 1)) if self.tempo_window > 0 else []
        if self.tempo_lags and self.tempo_window <= self.tempo_lags[-1]:
            raise ConfigError(
                f"encoder.options.tempogram_s={opts['tempogram_s']} is shorter than the "
                f"slowest beat period ({_TEMPO_MIN_BPM:.0f} BPM); use >= 2 s or 0 to disable"
            )
        self.key_window = int(round(float(opts["key_window_s"]) * self.frame_rate))
        self.hidden_size = (self.n_mels + 12 + 1 + len(self.tempo_lags)
                            + (26 if self.key_window > 0 else 0))
        self.num_layers = 1
        if config.hidden_size is not None and config.hidden_size != self.hidden_size:
            raise ConfigError(
                f"encoder.hidden_size={config.hidden_size} does not match the spectral "
                f"features' size {self.hidden_size} (n_mels + 13 + tempogram lags + 24 key "
                f"profiles + 2 mode strengths); leave it unset"
            )
        if config.num_layers is not None and config.num_layers != 1:
            raise ConfigError(
                f"encoder.num_layers={config.num_layers}: the spectral encoder has 1 layer"
            )
        self.options = {**opts, "fmax": fmax}
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer(
            "mel_fb", torch.from_numpy(mel_filterbank(
                self.sample_rate, self.n_fft, self.n_mels, float(opts["fmin"]), fmax)),
            persistent=False)
        self.register_buffer(
            "chroma_fb", torch.from_numpy(chroma_filterbank(
                self.sample_rate, self.n_fft, float(opts["chroma_fmin"]),
                float(opts["chroma_fmax"]))),
            persistent=False)
        major, minor = (torch.tensor(TEMPERLEY[m], dtype=torch.float32) for m in MODES)
        profiles = torch.stack([torch.roll(major, k) for k in range(12)]
                               + [torch.roll(minor, k) for k in range(12)])
        profiles = profiles - profiles.mean(1, keepdim=True)
        self.register_buffer("key_profiles", profiles / profiles.norm(dim=1, keepdim=True),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def frame_spec(self) -> dict:
        """ceil(num_samples / hop) frames, at least 1."""
        return {"rule": "hop", "hop": int(self.hop)}

    def fingerprint(self) -> dict:
        """Name, rates, sizes and every option (n_mels, n_fft, ...)."""
        fp = super().fingerprint()
        fp["options"] = {k: self.options[k] for k in sorted(self.options)}
        # Bump when the feature computation changes. 3: librosa's chroma filterbank (the mel
        # filterbank moved to librosa too, with identical values).
        fp["version"] = 3
        return fp

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) + lengths -> hidden states (B, 1, T, n_mels + 13) and mask (B, T)."""
        device = self.window.device
        x = inputs.to(device=device, dtype=torch.float32)
        lengths = lengths.to(device)
        n = x.shape[1]
        frames = torch.clamp((lengths + self.hop - 1) // self.hop, min=1)
        total = int(frames.max())
        # Zero everything past each clip so padding content can never leak into its frames.
        x = x * (torch.arange(n, device=device)[None, :] < lengths[:, None])
        left = self.n_fft // 2 - self.hop // 2
        need = (total - 1) * self.hop + self.n_fft
        right = max(0, need - left - n)
        x = F.pad(x, (left, right))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False,
                          return_complex=True)[..., :total]
        # Normalise by the window sum: a full-scale sine then has magnitude ~0.5,
        # independent of n_fft.
        power = (spec.abs() / self.window.sum()).pow(2)  # (B, bins, T)
        mel = torch.matmul(self.mel_fb, power)  # (B, n_mels, T)
        logmel = torch.log(mel + _LOGMEL_FLOOR)
        chroma_e = torch.matmul(self.chroma_fb, power)  # (B, 12, T)
        peak = chroma_e.amax(1, keepdim=True)
        chroma = torch.where(peak > 0, chroma_e / peak.clamp_min(1e-30), torch.zeros_like(peak))
        flux = torch.relu(logmel[..., 1:] - logmel[..., :-1]).mean(1, keepdim=True)
        onset = F.pad(flux, (1, 0))  # frame 0 has no predecessor: no onset evidence
        mask = frame_mask(frames, total)
        onset = torch.log1p(onset) * mask[:, None]
        chroma = chroma * mask[:, None]
        groups = [(logmel + _LOGMEL_SHIFT) / _LOGMEL_SCALE, 2.0 * chroma - 1.0,
                  onset / _ONSET_SCALE]
        if self.tempo_lags:
            groups.append(self._tempogram(onset[:, 0]))
        if self.key_window > 0:
            keys = self._key_correlation(chroma, mask)
            groups += [keys, keys[:, :12].amax(1, keepdim=True), keys[:, 12:].amax(1, keepdim=True)]
        feats = torch.cat(groups, dim=1).transpose(1, 2)  # (B, T, D)
        feats = feats * mask[..., None]
        # Computed on the encoder's device, returned on the input's (the contract).
        return EncoderOutput(hidden_states=feats[:, None].contiguous().to(inputs.device),
                             mask=mask.to(inputs.device))

    def _windows(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """(B, C, T) -> (B, C, T, width) windows centred on each frame, zeros outside."""
        left = width // 2
        x = F.pad(x, (left, width - 1 - left))
        return x.unfold(-1, width, 1)

    def _tempogram(self, onset: torch.Tensor) -> torch.Tensor:
        """(B, T) onset envelope -> (B, lags, T) normalised local autocorrelation."""
        w = self._windows(onset[:, None], self.tempo_window)[:, 0]  # (B, T, W)
        w = w - w.mean(-1, keepdim=True)
        energy = (w * w).sum(-1).clamp_min(1e-8)
        rows = [(w[..., :-lag] * w[..., lag:]).sum(-1) / energy for lag in self.tempo_lags]
        return torch.stack(rows, 1)

    def _key_correlation(self, chroma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 12, T) chroma -> (B, 24, T) Pearson correlation of the windowed chroma sum
        with the key profiles (0 where the window holds no pitched energy)."""
        local = self._windows(chroma, self.key_window).sum(-1)  # (B, 12, T)
        local = local - local.mean(1, keepdim=True)
        norm = local.norm(dim=1, keepdim=True)
        unit = torch.where(norm > 1e-6, local / norm.clamp_min(1e-6), torch.zeros_like(local))
        return torch.einsum("kc,bct->bkt", self.key_profiles, unit)
