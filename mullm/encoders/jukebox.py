"""Jukebox-5B features as LLark (and JukeMIR before it) extract them.

The pipeline, per 1,048,576-sample window (23.78 s at 44.1 kHz):

1. peak-normalise the clip to 1 (LLark ``load_audio_from_file``), pad the window with zeros;
2. the VQ-VAE's top level turns audio into 8,192 codes (one per 128 samples, ~344.5 Hz);
3. the 5B top-level prior embeds the codes (shifted right, the label embedding in front),
   adds its position embedding and the timing conditioning (artist and genre "unknown",
   total length 62 s, offset 0, as LLark's ``get_cond``), and runs the first ``layer``
   transformer blocks; the output of block 36 is LLark's feature (4,800 wide);
4. the codes of padding are cut off (``floor(samples / 128)`` tokens are kept) and the rest is
   mean-pooled in windows of ``floor(344.53 / pool_rate_hz)`` tokens: 34 tokens at 10 Hz,
   dropping a partial last window, so LLark's "10 Hz" is really 44100 / 128 / 34 = 10.13 Hz.

The model code is OpenAI's, from the ``jukebox-infer`` package (an inference-only port that
runs on current torch), so the official checkpoint files load key for key. Its forward passes
assert CUDA tensors, so the forward is re-stated here on top of its modules: it runs on any
device, and only the blocks up to the deepest requested layer are built (as LLark does).

Clips longer than one window are encoded window by window (each window is a fresh 23.78 s
excerpt at offset 0, as LLark treats its clips) and the tokens concatenated before pooling;
LLark itself only ever read the first window.

Weights (not downloadable here; fetch them where you have internet):
``https://openaipublic.azureedge.net/jukebox/models/5b/vqvae.pth.tar`` and
``https://openaipublic.azureedge.net/jukebox/models/5b/prior_level_2.pth.tar``; put both in
one folder and set ``encoder.checkpoint`` to it (default ``~/.cache/jukebox/models/5b``,
where jukebox-infer caches them).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.config import EncoderConfig
from mullm.encoders import weights as W
from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.errors import ConfigError, DataError, ModelLoadError
from mullm.utils.dtypes import torch_dtype
from mullm.utils.files import load_npy

JUKEBOX_URLS = {
    "vqvae.pth.tar": "https://openaipublic.azureedge.net/jukebox/models/5b/vqvae.pth.tar",
    "prior_level_2.pth.tar": "https://openaipublic.azureedge.net/jukebox/models/5b/"
                             "prior_level_2.pth.tar",
}
DEFAULT_DIR = "~/.cache/jukebox/models/5b"
LLARK_DIM = 4800
# LLark's conditioning: a 62 s "song" (the prior only accepts totals >= 60 s), offset 0.
COND_TOTAL_SECONDS = 62


def _quiet() -> contextlib.AbstractContextManager:
    """jukebox-infer prints a line per module it builds; keep the user's console readable."""
    return contextlib.redirect_stdout(io.StringIO())


class JukeboxEncoder(Encoder):
    """Jukebox-5B top-prior activations at a chosen layer, mean-pooled to a chosen rate."""

    modality = "audio"
    sample_rate = 44100
    OPTIONS = {"layer", "layers_out", "pool_rate_hz", "vqvae_checkpoint", "prior_checkpoint",
               "normalize", "allow_pickle", "random_init", "vqvae_hparams", "prior_hparams",
               "batch"}

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        W.check_options(config, self.OPTIONS)
        opts = config.options
        layer = int(opts.get("layer", 36))
        layers_out = [int(i) for i in opts.get("layers_out", [layer])]
        if not layers_out or min(layers_out) < 1:
            raise ConfigError(f"encoder.options.layers_out={layers_out}: transformer layers are "
                              "numbered from 1 (the output of block k)")
        self.layers_out = sorted(set(layers_out))
        depth = max(self.layers_out)
        self.normalize = bool(opts.get("normalize", True))
        self.batch = int(opts.get("batch", 1))
        random_init = bool(opts.get("random_init", False))

        from jukebox_infer.hparams import setup_hparams
        from jukebox_infer.make_models import make_prior, make_vqvae

        vq_hps = setup_hparams("vqvae", dict(opts.get("vqvae_hparams", {})))
        pr_hps = setup_hparams("prior_5b", dict(opts.get("prior_hparams", {})))
        if depth > pr_hps.prior_depth:
            raise ConfigError(f"encoder.options.layer(s) {self.layers_out}: the prior has only "
                              f"{pr_hps.prior_depth} layers")
        full_depth = pr_hps.prior_depth
        pr_hps.prior_depth = depth  # build only the blocks we read (LLark does the same)
        pr_hps.fp16_params = False  # dtype is config.dtype, applied below
        pr_hps.restore_prior = ""
        vq_hps.restore_vqvae = ""
        top_hop = int(np.prod([s ** d for s, d in zip(vq_hps.strides_t, vq_hps.downs_t)]))
        vq_hps.sample_length = pr_hps.n_ctx * top_hop
        if not random_init:
            paths = self._paths()  # checked before building anything big
        with _quiet():
            vqvae = make_vqvae(vq_hps, device="cpu", auto_download=False)
            if random_init:
                prior = make_prior(pr_hps, vqvae, device="cpu", auto_download=False)
            else:
                # Real weights replace every tensor: build on the meta device (no 10 GB random
                # init) and let load_state_dict(assign=True) bring in the checkpoint's tensors.
                with torch.device("meta"):
                    prior = make_prior(pr_hps, vqvae, device="meta", auto_download=False)
        if not random_init:
            self._load(vqvae, prior, full_depth, depth, *paths)
        else:
            # Random codebooks (the real ones come from the checkpoint; zeros would map every
            # frame to code 0): tests only.
            gen = torch.Generator().manual_seed(0)
            for block in vqvae.bottleneck.level_blocks:
                block.k.copy_(torch.randn(block.k.shape, generator=gen))
        self.sample_rate = int(vq_hps.sr)
        self.level = int(pr_hps.level)
        self.hop = int(prior.raw_to_tokens)
        self.n_ctx = int(pr_hps.n_ctx)
        self.window = self.n_ctx * self.hop
        # Keep only what the features need: the top-level VQ-VAE encoder and codebook.
        self.vq_encoder = vqvae.encoders[self.level]
        self.vq_codebook = vqvae.bottleneck.level_blocks[self.level]
        self.prior = prior.prior
        self.prior.only_encode = True
        self.y_emb = prior.y_emb
        self.cond_total = (COND_TOTAL_SECONDS * self.sample_rate) // self.hop * self.hop
        self.prior_sample_length = int(prior.sample_length)
        dtype = torch_dtype(config.dtype)
        for m in (self.vq_encoder, self.vq_codebook, self.prior, self.y_emb):
            m.to(dtype).eval().requires_grad_(False)
        for m in self.prior.modules():
            if isinstance(m, torch.nn.LayerNorm):
                # Jukebox normalises in float32 whatever the activations' dtype (its fp16
                # models kept LayerNorm weights in float32 too).
                m.float()

        token_rate = self.sample_rate / self.hop
        pool = opts.get("pool_rate_hz", 10.0)
        self.pool_frames = 1 if not pool else math.floor(token_rate / float(pool))
        if self.pool_frames < 1:
            raise ConfigError(f"encoder.options.pool_rate_hz={pool} is above the token rate "
                              f"{token_rate:.2f} Hz")
        self.frame_rate = token_rate / self.pool_frames
        self.num_layers = len(self.layers_out)
        self.hidden_size = int(pr_hps.prior_width)
        W.check_declared(self)

    # -------------------------------------------------------------------------- loading

    def _paths(self) -> tuple[Path, Path]:
        """The VQ-VAE and prior files, refused with their download URLs when absent."""
        opts = self.config.options
        folder = Path(os.path.expanduser(self.config.checkpoint or DEFAULT_DIR))
        vq = Path(opts.get("vqvae_checkpoint") or folder / "vqvae.pth.tar").expanduser()
        pr = Path(opts.get("prior_checkpoint") or folder / "prior_level_2.pth.tar").expanduser()
        for path, name in ((vq, "vqvae.pth.tar"), (pr, "prior_level_2.pth.tar")):
            if not path.is_file():
                raise W.missing_weights_error(f"Jukebox {name}", path,
                                              f"get it from {JUKEBOX_URLS[name]}")
        return vq, pr

    def _load(self, vqvae: torch.nn.Module, prior: torch.nn.Module, full_depth: int,
              depth: int, vq_path: Path, pr_path: Path) -> None:
        allow = bool(self.config.options.get("allow_pickle", False))
        vq_state = self._model_state(W.load_weights_file(vq_path, allow_pickle=allow,
                                                         what="Jukebox VQ-VAE"), vq_path)
        W.load_exact(vqvae, vq_state, f"{vq_path} (VQ-VAE)")
        pr_state = self._model_state(W.load_weights_file(pr_path, allow_pickle=allow,
                                                         what="Jukebox 5B prior"), pr_path)
        # Blocks past the deepest layer we read are not built: drop exactly those keys and
        # check that they are the only ones dropped (no silent strict=False).
        prefix = "prior.transformer._attn_mods."
        skipped = [k for k in pr_state if k.startswith(prefix)
                   and int(k[len(prefix):].split(".")[0]) >= depth]
        found = {int(k[len(prefix):].split(".")[0]) for k in pr_state if k.startswith(prefix)}
        if found and max(found) + 1 != full_depth:
            raise ModelLoadError(f"{pr_path}: has {max(found) + 1} transformer blocks, expected "
                                 f"{full_depth} (not the 5B top-level prior?)")
        for k in skipped:
            del pr_state[k]
        W.load_exact(prior, pr_state, f"{pr_path} (prior, first {depth} blocks)", assign=True)

    @staticmethod
    def _model_state(ckpt: Any, path: Path) -> dict[str, torch.Tensor]:
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise ModelLoadError(f"{path}: expected OpenAI's checkpoint layout (a dict with "
                                 f"'model'), got {type(ckpt).__name__}")
        return W.strip_prefix(dict(ckpt["model"]))

    # ------------------------------------------------------------------------ forward

    def num_tokens(self, num_samples: int) -> int:
        """Prior tokens kept for a clip (LLark: floor(samples / 128), at least one)."""
        return max(1, int(num_samples) // self.hop)

    def frame_spec(self) -> dict:
        """Pooled frames: whole pooling windows of prior tokens (LLark's floor mode)."""
        return {"rule": "floor", "hop": int(self.hop), "pool": int(self.pool_frames)}

    def _conditioning(self, dtype: torch.dtype, device: torch.device
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """LLark's labels: artist and genre "unknown" (id 0), total 62 s, offset 0."""
        y = self.y_emb
        width = self.prior.width
        artist = torch.zeros(1, 1, dtype=torch.long, device=device)
        genre = torch.full((1, y.max_bow_genre_size), -1, dtype=torch.long, device=device)
        genre[0, 0] = 0
        keep = (genre >= 0).unsqueeze(2).to(dtype)
        start_emb = y.artist_emb.emb(artist) + (y.bow_genre_emb.emb(genre.clamp(0)) * keep).sum(
            1, keepdim=True)
        total = torch.tensor([[float(self.cond_total)]], device=device)
        start = torch.zeros(1, 1, device=device)
        end = start + self.prior_sample_length
        pos = (y.total_length_emb(total) + y.absolute_pos_emb(start, end)
               + y.relative_pos_emb(start / total, end / total))
        return start_emb.reshape(1, width).to(dtype), pos.to(dtype)

    @torch.no_grad()
    def tokens(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, window) audio -> (N, n_ctx) top-level VQ-VAE codes."""
        dtype = next(self.vq_encoder.parameters()).dtype
        h = self.vq_encoder(windows[:, None, :].to(dtype))[-1]
        return self.vq_codebook.encode(h.float() if dtype == torch.float16 else h)

    @torch.no_grad()
    def activations(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """(N, n_ctx) codes -> the prior's activations after each block in ``layers_out``."""
        dtype = self.prior.x_emb.weight.dtype
        start_emb, x_cond = self._conditioning(dtype, codes.device)
        x = self.prior.x_emb(codes)
        x = torch.roll(x, 1, dims=1)  # next-token prediction: shift right, label in front
        x[:, 0] = start_emb
        x = x + self.prior.pos_emb().to(dtype) + x_cond
        out = []
        for i, block in enumerate(self.prior.transformer._attn_mods):
            x = block(x, encoder_kv=None, sample=False)
            if i + 1 in self.layers_out:
                out.append(x.float())
        return out

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) at 44.1 kHz -> (B, L, T, 4800) pooled activations and a mask (B, T),
        both on ``inputs.device`` (computed on the prior's device)."""
        device = next(self.prior.parameters()).device
        windows, owners = [], []
        for b, n in enumerate(lengths.tolist()):
            wave = inputs[b, :n].float()
            if self.normalize:
                peak = wave.abs().max()
                wave = wave / peak if peak > 0 else wave
            for start in range(0, n, self.window):
                piece = wave[start:start + self.window]
                windows.append(torch.nn.functional.pad(piece, (0, self.window - piece.shape[0])))
                owners.append(b)
        acts: list[list[torch.Tensor]] = [[] for _ in range(inputs.shape[0])]
        for i in range(0, len(windows), self.batch):
            chunk = torch.stack(windows[i:i + self.batch]).to(device)
            layers = self.activations(self.tokens(chunk))
            for j in range(chunk.shape[0]):
                acts[owners[i + j]].append(torch.stack([h[j] for h in layers]))
        counts = [self.num_frames(int(n)) for n in lengths]
        total = max(counts)
        out = torch.zeros(inputs.shape[0], self.num_layers, total, self.hidden_size,
                          device=inputs.device)
        for b, n in enumerate(lengths.tolist()):
            seq = torch.cat(acts[b], dim=1)[:, : self.num_tokens(n)]  # drop padding's tokens
            out[b, :, : counts[b]] = _mean_pool(seq, self.pool_frames, counts[b])
        mask = frame_mask(torch.tensor(counts, device=inputs.device), total)
        return EncoderOutput(hidden_states=out, mask=mask)


def _mean_pool(seq: torch.Tensor, size: int, frames: int) -> torch.Tensor:
    """(L, tokens, D) -> (L, frames, D): means of consecutive ``size``-token windows; a clip
    shorter than one window is averaged whole."""
    if seq.shape[1] < size:
        return seq.mean(1, keepdim=True)
    return seq[:, : frames * size].reshape(seq.shape[0], frames, size, -1).mean(2)


# ------------------------------------------------------------ LLark's precomputed features


def iter_llark_features(folder: str | os.PathLike, expected_dim: int | None = LLARK_DIM,
                        errors: list[dict[str, str]] | None = None
                        ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (id, float32 tensor (T, D)) for each ``.npy`` under ``folder`` (LLark's layout:
    one file per clip, (T, 4800) at ~10.13 Hz, or (4800,) when pooled over the whole clip).

    ``id`` is the path relative to ``folder`` without ``.npy``. A bad file raises
    ``DataError`` naming it, unless ``errors`` is a list: then ``{"input", "error"}`` is
    appended to it and the file is skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of LLark .npy features")
    files = sorted(root.rglob("*.npy"))
    if not files:
        raise DataError(f"{root}: no .npy files found (LLark writes one <clip>.npy per clip)")
    for path in files:
        try:
            yield path.relative_to(root).with_suffix("").as_posix(), _read_npy(path, expected_dim)
        except DataError as exc:
            if errors is None:
                raise
            errors.append({"input": str(path), "error": str(exc)})


def _read_npy(path: Path, expected_dim: int | None) -> torch.Tensor:
    arr = load_npy(path, DataError)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"{path}: expected features of shape (T, D) with T >= 1, got {arr.shape}")
    if expected_dim is not None and arr.shape[1] != expected_dim:
        raise DataError(f"{path}: expected width {expected_dim} (Jukebox layer activations), "
                        f"got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: expected float features, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: features contain NaN or inf values")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def import_llark_features(folder: str | os.PathLike, expected_dim: int | None = LLARK_DIM,
                          errors: list[dict[str, str]] | None = None) -> dict[str, torch.Tensor]:
    """Read every clip of an LLark feature folder into ``{id: (T, D) tensor}``."""
    return dict(iter_llark_features(folder, expected_dim, errors))


__all__ = ["JUKEBOX_URLS", "JukeboxEncoder", "import_llark_features", "iter_llark_features"]
