"""CLAP audio encoders: the official ``laion_clap`` checkpoints and transformers' ``ClapModel``.

Both run HTSAT (a Swin transformer over a 10 s log-mel image) at 48 kHz and expose:

- frames: the HTSAT grid before pooling, averaged over its frequency rows, as (B, 1, T, D):
  32 frames per 10 s window (3.2 Hz) of width 768 (HTSAT-tiny) / 1024 (HTSAT-base);
- the pooled clip embedding: ``pooled()`` returns the projected, L2-normalised CLAP embedding
  (512-d), and ``options.output: pooled`` makes ``encode`` return it as one frame per window.

Audio longer than one window (10 s for the real models) is cut into consecutive windows that
are encoded independently; a short last window is filled the way CLAP was trained (the audio
repeated, then zero-padded: "repeatpad") and its frames past the real audio are masked out.

``laion_clap`` builds only the audio branch (HTSAT + audio projection) from the package's own
model config, so neither the RoBERTa text model nor its tokenizer is ever downloaded; the text
side is not needed here. ``load_laion_clap_tokenizer`` is the loud check for code that does need
it (offline, transformers silently returns a broken 5-token tokenizer).

Official ``.pt`` files are read safely by ``mullm.encoders.weights``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mullm.config import EncoderConfig
from mullm.encoders import weights as W
from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.encoders.weights import load_weights_file  # noqa: F401 - in __all__
from mullm.errors import ConfigError, ModelLoadError
from mullm.utils.dtypes import torch_dtype

# ------------------------------------------------------------------------- shared windowing


def _windows(inputs: torch.Tensor, lengths: torch.Tensor, window: int
             ) -> list[tuple[int, int, torch.Tensor]]:
    """Cut each clip into consecutive ``window``-sample pieces: (clip, real samples, wave)."""
    out = []
    for b, n in enumerate(lengths.tolist()):
        for start in range(0, n, window):
            real = min(window, n - start)
            out.append((b, real, inputs[b, start:start + real]))
    return out


def _repeatpad(wave: torch.Tensor, size: int) -> torch.Tensor:
    """CLAP's filling of a short clip: repeat it a whole number of times, then zero-pad."""
    n = wave.shape[0]
    if n >= size:
        return wave[:size]
    reps = size // n
    return F.pad(wave.repeat(reps), (0, size - n * reps))


class _ClapBase(Encoder):
    """What both CLAP flavours share: windowing, frame masks, pooled embeddings."""

    modality = "audio"
    sample_rate = 48000
    window: int = 480000          # samples per HTSAT window
    frames_per_window: int = 32   # HTSAT time frames per window
    frame_dim: int = 768
    embed_dim: int = 512

    def _setup_output(self) -> None:
        output = self.config.options.get("output", "frames")
        if output not in ("frames", "pooled"):
            raise ConfigError(
                f"encoder.options.output={output!r} is not allowed; choose 'frames' (HTSAT "
                f"time frames) or 'pooled' (one projected CLAP embedding per window)"
            )
        self.output = output
        if self.config.sample_rate not in (None, self.sample_rate):
            raise ConfigError(
                f"encoder.sample_rate={self.config.sample_rate} but {self.config.name} runs at "
                f"{self.sample_rate} Hz; leave it unset or set it to {self.sample_rate}"
            )
        per_window = 1 if output == "pooled" else self.frames_per_window
        self.frame_rate = per_window * self.sample_rate / self.window
        self.num_layers = 1
        self.hidden_size = self.embed_dim if output == "pooled" else self.frame_dim

    def frame_spec(self) -> dict:
        """Whole windows plus the covered part of the last (integer arithmetic: 3.2 Hz is not
        exact in float)."""
        per_window = 1 if self.output == "pooled" else self.frames_per_window
        return {"rule": "windows", "window": int(self.window), "per_window": int(per_window)}

    def _run_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode full-length windows: (N, T, frame_dim) frames and (N, embed_dim) embeddings."""
        raise NotImplementedError

    @torch.no_grad()
    def _encode_windows(self, inputs: torch.Tensor, lengths: torch.Tensor, batch: int = 8
                        ) -> tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor]:
        pieces = _windows(inputs, lengths, self.window)
        frames, embeds = [], []
        for i in range(0, len(pieces), batch):
            chunk = [w for _, _, w in pieces[i:i + batch]]
            f, e = self._run_windows(chunk)
            frames.append(f.float())
            embeds.append(e.float())
        meta = [(b, real) for b, real, _ in pieces]
        return meta, torch.cat(frames), torch.cat(embeds)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) at 48 kHz -> (B, 1, T, D) frames (or pooled embeddings) and a mask
        (B, T), both on ``inputs.device``."""
        meta, frames, embeds = self._encode_windows(inputs, lengths)
        frames, embeds = frames.to(inputs.device), embeds.to(inputs.device)
        per_window = 1 if self.output == "pooled" else self.frames_per_window
        counts = [self.num_frames(int(n)) for n in lengths]
        total = max(counts)
        out = frames.new_zeros(len(counts), total, self.hidden_size)
        cursor = [0] * len(counts)
        for i, (b, real) in enumerate(meta):
            if self.output == "pooled":
                piece = embeds[i:i + 1]
            else:
                keep = -(-real * per_window // self.window)
                piece = frames[i, :keep]
            out[b, cursor[b]:cursor[b] + piece.shape[0]] = piece
            cursor[b] += piece.shape[0]
        mask = frame_mask(torch.tensor(counts, device=inputs.device), total)
        return EncoderOutput(hidden_states=out[:, None], mask=mask)

    def pooled(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One L2-normalised CLAP audio embedding per clip, (B, embed_dim) on
        ``inputs.device``; clips longer than a window average their windows' embeddings
        (weighted by real audio) and renormalise."""
        meta, _, embeds = self._encode_windows(inputs, lengths)
        embeds = embeds.to(inputs.device)
        out = embeds.new_zeros(inputs.shape[0], embeds.shape[1])
        for i, (b, real) in enumerate(meta):
            out[b] += embeds[i] * real
        return F.normalize(out, dim=-1)


# ------------------------------------------------------------------------- official laion_clap

LAION_CLAP_URLS = {
    "630k-audioset-best.pt": "https://huggingface.co/lukewys/laion_clap/resolve/main/"
                             "630k-audioset-best.pt",
    "music_audioset_epoch_15_esc_90.14.pt": "https://huggingface.co/lukewys/laion_clap/"
                                            "resolve/main/music_audioset_epoch_15_esc_90.14.pt",
}
ROBERTA_VOCAB = 50265


def check_text_tokenizer(tokenizer: Any, name: str = "roberta-base") -> Any:
    """Refuse the broken tokenizer transformers returns for roberta-base when offline."""
    size = len(tokenizer)
    if size < ROBERTA_VOCAB:
        raise ModelLoadError(
            f"the {name} tokenizer that laion_clap's text branch needs came back with {size} "
            f"tokens instead of {ROBERTA_VOCAB}: it was not downloaded (HF_HUB_OFFLINE=1 or no "
            f"network) and transformers silently built an empty one. Download {name} where you "
            f"have internet (huggingface-cli download {name}) or use the audio branch only"
        )
    return tokenizer


def load_laion_clap_tokenizer(name: str = "roberta-base") -> Any:
    """Load the tokenizer laion_clap uses for text, failing loudly if it is the offline stub."""
    from transformers import RobertaTokenizer

    try:
        tok = RobertaTokenizer.from_pretrained(name)
    except OSError as exc:
        raise W.missing_weights_error(f"{name} tokenizer", name) from exc
    return check_text_tokenizer(tok, name)


class _LaionAudioTower(nn.Module):
    """laion_clap's audio branch and audio projection under the checkpoint's key names."""

    def __init__(self, amodel: str) -> None:
        super().__init__()
        import laion_clap.clap_module as clap_module  # heavy: imported only when asked for
        from laion_clap.clap_module.htsat import create_htsat_model
        from laion_clap.clap_module.model import CLAPAudioCfp

        cfg_file = Path(clap_module.__file__).parent / "model_configs" / f"{amodel}.json"
        if not cfg_file.is_file():
            known = sorted(p.stem for p in cfg_file.parent.glob("HTSAT-*.json"))
            raise ConfigError(f"encoder.options.amodel={amodel!r} is unknown; known: {known}")
        cfg = json.loads(cfg_file.read_text())
        audio_cfg = CLAPAudioCfp(**cfg["audio_cfg"])
        if audio_cfg.model_type != "HTSAT":
            raise ConfigError(f"encoder.options.amodel={amodel!r}: only HTSAT models are supported")
        self.audio_cfg = audio_cfg
        self.embed_dim = int(cfg["embed_dim"])
        self.audio_branch = create_htsat_model(audio_cfg, enable_fusion=False)
        # CLAP's defaults: joint_embed_shape=512, mlp_act="relu" (clap_module/model.py).
        self.joint_dim = 512
        self.audio_projection = nn.Sequential(
            nn.Linear(self.embed_dim, self.joint_dim), nn.ReLU(),
            nn.Linear(self.joint_dim, self.joint_dim),
        )


class LaionClapEncoder(_ClapBase):
    """LAION-CLAP audio tower from an official ``.pt`` checkpoint (HTSAT-tiny or -base)."""

    OPTIONS = {"amodel", "output", "allow_pickle", "random_init", "quantize_int16", "batch"}

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        W.check_options(config, self.OPTIONS)
        amodel = config.options.get("amodel", "HTSAT-tiny")
        if config.checkpoint is not None and not Path(config.checkpoint).expanduser().is_file():
            name = Path(config.checkpoint).name
            url = LAION_CLAP_URLS.get(name, LAION_CLAP_URLS["630k-audioset-best.pt"])
            raise W.missing_weights_error(f"laion_clap checkpoint {name}", config.checkpoint,
                                          f"get it from {url}")
        audio = None
        if config.checkpoint is not None:
            # Read and vet the file before building the tower, so a bad file fails fast.
            audio = self._read(config.checkpoint, bool(config.options.get("allow_pickle", False)))
        elif not config.options.get("random_init", False):
            raise ConfigError(
                "encoder.checkpoint is required for laion_clap: the path to an official .pt file, "
                f"e.g. 630k-audioset-best.pt (HTSAT-tiny) or music_audioset_epoch_15_esc_90.14.pt "
                f"(options.amodel: HTSAT-base), from {LAION_CLAP_URLS['630k-audioset-best.pt']}; "
                "options.random_init=true builds random weights (tests only)"
            )
        self.tower = _LaionAudioTower(amodel)
        if audio is not None:
            W.load_exact(self.tower, audio, f"{config.checkpoint} ({amodel})")
        branch = self.tower.audio_branch
        self.window = int(self.tower.audio_cfg.clip_samples)
        self.sample_rate = int(self.tower.audio_cfg.sample_rate)
        grid_t = branch.spec_size // branch.patch_stride[1] // 2 ** (len(branch.depths) - 1)
        self.frames_per_window = grid_t * branch.freq_ratio
        # forward_features upsamples its time frames by repetition (utils.interpolate) with
        # this ratio; reading every ratio-th row gives the frames back exactly.
        self._upsample = 8 * branch.patch_stride[1]
        self.frame_dim = branch.num_features
        self.embed_dim = self.tower.joint_dim
        self.quantize = bool(config.options.get("quantize_int16", True))
        self._setup_output()
        W.check_declared(self)
        self.tower.to(torch_dtype(config.dtype)).eval().requires_grad_(False)

    @staticmethod
    def _read(path: str, allow_pickle: bool) -> dict[str, torch.Tensor]:
        """The audio-side tensors of an official checkpoint, refused if it is not one."""
        name = Path(path).name
        ckpt = W.load_weights_file(path, allow_pickle=allow_pickle,
                                   what=f"laion_clap checkpoint {name}")
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ModelLoadError(f"{path}: expected a dict with a 'state_dict', got {type(ckpt)}")
        state = W.strip_prefix(state)
        if any(k.startswith(("audio_branch.fusion_model", "audio_branch.mel_conv2d"))
               for k in state):
            raise ModelLoadError(
                f"{path}: this is a fusion checkpoint (enable_fusion=True); mullm reads only the "
                f"non-fusion ones (630k-audioset-best.pt, music_audioset_epoch_15_esc_90.14.pt)"
            )
        # Keep the audio side; the text branch, its projections and the logit scales are
        # deliberately not loaded (the audio tower has no place for them).
        audio = {k: v for k, v in state.items()
                 if k.startswith(("audio_branch.", "audio_projection."))}
        if not audio:
            raise ModelLoadError(f"{path}: no audio_branch.* weights: not a LAION-CLAP checkpoint")
        return audio

    def _run_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        param = next(self.tower.parameters())
        x = torch.stack([_repeatpad(w.float(), self.window) for w in waves]).to(param.device)
        if self.quantize:
            # The official embedding path round-trips audio through int16 (hook.py).
            x = (x.clamp(-1.0, 1.0) * 32767.0).to(torch.int16).float() / 32767.0
        out = self.tower.audio_branch({"waveform": x.to(param.dtype)}, device=x.device)
        frames = out["fine_grained_embedding"][:, :: self._upsample]
        embeds = F.normalize(self.tower.audio_projection(out["embedding"]), dim=-1)
        return frames, embeds


# ------------------------------------------------------------------- transformers ClapModel


class HFClapEncoder(_ClapBase):
    """CLAP audio tower in transformers format (``ClapModel`` checkpoints such as
    ``laion/larger_clap_music``), with the checkpoint's own feature-extractor settings."""

    OPTIONS = {"output", "audio_config", "feature_extractor", "revision", "batch"}
    DEFAULT_CHECKPOINT = "laion/larger_clap_music"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        W.check_options(config, self.OPTIONS)
        from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

        opts = config.options
        dtype = torch_dtype(config.dtype)
        if "audio_config" in opts:
            # Random weights from an explicit config: tests and benchmarks only.
            model = ClapAudioModelWithProjection(ClapAudioConfig(**opts["audio_config"]))
            fe = ClapFeatureExtractor(**opts.get("feature_extractor", {}))
        else:
            source = config.checkpoint or self.DEFAULT_CHECKPOINT
            kw = dict(cache_dir=config.cache_dir, revision=opts.get("revision"))
            try:
                model, info = ClapAudioModelWithProjection.from_pretrained(
                    source, dtype=dtype, output_loading_info=True, **kw)
                fe = ClapFeatureExtractor.from_pretrained(source, **kw)
            except OSError as exc:
                raise W.missing_weights_error(
                    "CLAP checkpoint", source,
                    "set encoder.checkpoint to a hub id or a local folder with config.json, "
                    "the weights and preprocessor_config.json") from exc
            if info["missing_keys"] or info["mismatched_keys"]:
                raise ModelLoadError(
                    f"{source}: CLAP audio weights incomplete: missing "
                    f"{sorted(info['missing_keys'])[:6]}, mismatched "
                    f"{[k[0] if isinstance(k, tuple) else k for k in info['mismatched_keys']][:6]}"
                )
            if "feature_extractor" in opts:
                raise ConfigError("encoder.options.feature_extractor is only read with "
                                  "options.audio_config (random weights); a checkpoint brings "
                                  "its own preprocessor_config.json")
        self.model = model.to(dtype).eval().requires_grad_(False)
        self.fe = fe
        cfg = model.config
        self.sample_rate = int(fe.sampling_rate)
        self.window = int(fe.nb_max_samples)
        freq_ratio = cfg.spec_size // cfg.num_mel_bins
        stride_t = cfg.patch_stride[1] if isinstance(cfg.patch_stride, (list, tuple)) \
            else cfg.patch_stride
        grid_t = cfg.spec_size // stride_t // 2 ** (len(cfg.depths) - 1)
        self.frames_per_window = grid_t * freq_ratio
        self.frame_dim = int(cfg.patch_embeds_hidden_size * 2 ** (len(cfg.depths) - 1))
        self.embed_dim = int(cfg.projection_dim)
        if fe.feature_size != cfg.num_mel_bins:
            raise ConfigError(f"feature extractor makes {fe.feature_size} mel bins but the "
                              f"model expects {cfg.num_mel_bins}")
        self._setup_output()
        W.check_declared(self)

    def _run_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # The feature extractor works in numpy on the host; its output goes straight to the
        # model's device (numpy rather than "pt", so no tensor lands on a default device).
        arrays = [w.float().cpu().numpy() for w in waves]
        feats = self.fe(arrays, sampling_rate=self.sample_rate, return_tensors="np")
        param = next(self.model.parameters())
        x = torch.from_numpy(feats["input_features"]).to(param.device, param.dtype)
        is_longer = feats.get("is_longer")
        if is_longer is not None:
            is_longer = torch.from_numpy(is_longer).to(param.device)
        out = self.model.audio_model(input_features=x, is_longer=is_longer)
        grid = out.last_hidden_state  # (N, C, freq rows, T): HTSAT grid before pooling
        if grid.shape[-1] != self.frames_per_window:
            raise RuntimeError(f"CLAP produced {grid.shape[-1]} frames per window, expected "
                               f"{self.frames_per_window}")
        frames = grid.mean(2).transpose(1, 2)
        embeds = F.normalize(self.model.audio_projection(out.pooler_output), dim=-1)
        return frames, embeds

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised CLAP text embeddings (B, embed_dim) from the same checkpoint's text
        tower and tokenizer (loaded on first use), in the space of ``pooled``: their dot
        product with a clip's embedding is its CLAP score for the text.

        Raises:
            ModelLoadError: random-weight encoders (``options.audio_config``) have no text
                tower; a checkpoint without one, or not there.
        """
        if "audio_config" in self.config.options:
            raise ModelLoadError("CLAP text embeddings need a CLAP checkpoint with its text "
                                 "tower (encoder.checkpoint), not options.audio_config")
        if "_text" not in self.__dict__:  # a plain attribute: not part of the encoder's state
            from transformers import AutoTokenizer, ClapTextModelWithProjection

            source = self.config.checkpoint or self.DEFAULT_CHECKPOINT
            kw = dict(cache_dir=self.config.cache_dir, revision=self.config.options.get(
                "revision"))
            try:
                model, info = ClapTextModelWithProjection.from_pretrained(
                    source, output_loading_info=True, **kw)
                tok = AutoTokenizer.from_pretrained(source, **kw)
            except OSError as exc:
                raise W.missing_weights_error("CLAP text tower", source) from exc
            if info["missing_keys"]:
                raise ModelLoadError(f"{source}: CLAP text weights incomplete: missing "
                                     f"{sorted(info['missing_keys'])[:6]}")
            device = next(self.model.parameters()).device
            self.__dict__["_text"] = (model.to(device).eval().requires_grad_(False), tok)
        model, tok = self.__dict__["_text"]
        device = next(model.parameters()).device
        enc = tok(list(texts), padding=True, truncation=True, return_tensors="pt").to(device)
        return F.normalize(model(**enc).text_embeds.float(), dim=-1)


__all__ = ["HFClapEncoder", "LaionClapEncoder", "check_text_tokenizer",
           "load_laion_clap_tokenizer", "load_weights_file"]
