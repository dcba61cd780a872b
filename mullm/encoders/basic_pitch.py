"""Spotify's Basic Pitch (ICASSP 2022) as a frozen encoder: note, onset and pitch-contour
activations at ~86 frames/s.

The model ships inside the PyPI wheel ``basic-pitch`` as ``saved_models/icassp_2022/nmp.onnx``
(install the wheel with ``--no-deps``: its TensorFlow requirement is for other backends) and
runs with ``onnxruntime``, so it is the first pretrained music model that needs no network.

Preprocessing and framing are the package's own (``basic_pitch.inference.run_inference``):
22,050 Hz mono; ``OVERLAP / 2`` zeros before the clip; windows of 43,844 samples (2 s less one
hop) every 36,164 samples, the last one zero-padded; each window gives 172 frames at a hop of
256 samples, of which the first and last 15 (the overlap) are dropped; the concatenated frames
are cut to ``floor(samples * 86 / 22050)``. So the features of a clip equal the package's
``run_inference`` outputs (tested), and never depend on what the clip is batched with.

Output: one layer (B, 1, T, D) with D = 88 note + 88 onset + 264 contour activations
(``options.outputs`` picks and orders them), each a probability in [0, 1].
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.errors import ConfigError, ModelLoadError

SAMPLE_RATE = 22050
FFT_HOP = 256
FRAMES_PER_S = 86  # the package counts frames at SAMPLE_RATE // FFT_HOP
WINDOW = SAMPLE_RATE * 2 - FFT_HOP  # 43,844 samples
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP
HOP = WINDOW - OVERLAP  # 36,164 samples
WINDOW_FRAMES = 172
# ONNX output names of nmp.onnx (as basic_pitch.inference.Model maps them)
OUTPUT_NAMES = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2",
                "contour": "StatefulPartitionedCall:0"}
OUTPUT_SIZES = {"note": 88, "onset": 88, "contour": 264}
INPUT_NAME = "serving_default_input_2:0"
PIP_NAME = "basic-pitch"
MODEL_FILE = "saved_models/icassp_2022/nmp.onnx"


def packaged_model_path() -> Path:
    """nmp.onnx inside the installed ``basic-pitch`` wheel (found without importing it: the
    package's ``__init__`` probes for TensorFlow, CoreML and TFLite).

    Raises:
        ModelLoadError: the wheel is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the basic-pitch encoder needs the PyPI wheel {PIP_NAME!r}: run "
                             f"`pip install --no-deps {PIP_NAME}==0.4.0 onnxruntime`")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed {PIP_NAME} package")
    return path


def windows(wave: np.ndarray) -> np.ndarray:
    """(n_windows, WINDOW) windows of one clip, framed as ``run_inference`` frames it."""
    padded = np.concatenate([np.zeros(OVERLAP // 2, dtype=np.float32),
                             wave.astype(np.float32)])
    starts = range(0, padded.shape[0], HOP)
    out = np.zeros((len(starts), WINDOW), dtype=np.float32)
    for k, s in enumerate(starts):
        chunk = padded[s:s + WINDOW]
        out[k, :chunk.shape[0]] = chunk
    return out


class BasicPitchEncoder(Encoder):
    """Basic Pitch activations (note / onset / contour) from 22,050 Hz audio via onnxruntime."""

    modality = "audio"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        opts = dict(config.options)
        unknown = sorted(set(opts) - {"outputs", "max_windows"})
        if unknown:
            raise ConfigError(f"encoder.options: unknown basic_pitch option(s) {unknown}; "
                              "known: ['max_windows', 'outputs']")
        self.outputs = list(opts.get("outputs", ["note", "onset", "contour"]))
        bad = [o for o in self.outputs if o not in OUTPUT_SIZES] or \
            (["(repeated)"] if len(set(self.outputs)) != len(self.outputs) else [])
        if not self.outputs or bad:
            raise ConfigError(f"encoder.options.outputs={self.outputs}: choose a non-empty "
                              f"subset of {list(OUTPUT_SIZES)} without repeats")
        # Windows per onnxruntime call (bounds memory for long clips and big batches).
        self.max_windows = int(opts.get("max_windows", 32))
        if config.sample_rate not in (None, SAMPLE_RATE):
            raise ConfigError(f"encoder.sample_rate={config.sample_rate}: Basic Pitch takes "
                              f"{SAMPLE_RATE} Hz audio; leave it unset or {SAMPLE_RATE}")
        self.sample_rate = SAMPLE_RATE
        self.frame_rate = float(FRAMES_PER_S)
        self.num_layers = 1
        self.hidden_size = sum(OUTPUT_SIZES[o] for o in self.outputs)
        for name, want, got in (("hidden_size", self.hidden_size, config.hidden_size),
                                ("num_layers", 1, config.num_layers),
                                ("frame_rate", self.frame_rate, config.frame_rate)):
            if got is not None and got != want:
                raise ConfigError(f"encoder.{name}={got} does not match Basic Pitch's {want} "
                                  f"(outputs {self.outputs}); leave it unset")
        self.model_path = Path(config.checkpoint) if config.checkpoint else \
            packaged_model_path()
        if not self.model_path.is_file():
            raise ModelLoadError(f"encoder.checkpoint={config.checkpoint!r}: no such file")
        self._session = None
        self._providers: tuple[str, ...] = ()

    def frame_spec(self) -> dict:
        """floor(num_samples * 86 / 22050) frames, at least 1 (the package's count)."""
        return {"rule": "rate_floor", "frame_rate": float(FRAMES_PER_S),
                "sample_rate": float(SAMPLE_RATE)}

    def fingerprint(self) -> dict:
        """Name, rates, sizes, the outputs kept and the model file's hash."""
        from mullm.utils.hashing import file_sha256

        fp = super().fingerprint()
        fp["checkpoint"] = None  # where the file lies does not change the features
        fp["outputs"] = list(self.outputs)
        fp["model_sha256"] = file_sha256(self.model_path)
        return fp

    def session(self, device: torch.device) -> object:
        """The onnxruntime session (CUDA when the inputs are there and ORT has it)."""
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        if self._session is None or tuple(providers) != self._providers:
            opts = ort.SessionOptions()
            # As many threads as torch uses, not every core of the machine.
            opts.intra_op_num_threads = max(1, torch.get_num_threads())
            opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.model_path), sess_options=opts,
                                                 providers=providers)
            self._providers = tuple(providers)
        return self._session

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) at 22,050 Hz + lengths -> (B, 1, T, D) activations and mask (B, T)."""
        device = inputs.device
        waves = inputs.detach().to("cpu", torch.float32).numpy()
        n = [int(x) for x in lengths.tolist()]
        per_clip = [windows(waves[b, :n[b]]) for b in range(len(n))]
        stacked = np.concatenate(per_clip)[..., None]  # (total windows, WINDOW, 1)
        sess = self.session(device)
        names = [OUTPUT_NAMES[o] for o in self.outputs]
        parts = []
        for a in range(0, stacked.shape[0], self.max_windows):
            outs = sess.run(names, {INPUT_NAME: stacked[a:a + self.max_windows]})
            parts.append(np.concatenate(outs, axis=-1))
        acts = np.concatenate(parts)  # (total windows, 172, D)
        half = OVERLAP_FRAMES // 2
        acts = acts[:, half:WINDOW_FRAMES - half]
        frames = [self.num_frames(x) for x in n]
        total = max(frames)
        out = np.zeros((len(n), total, self.hidden_size), dtype=np.float32)
        at = 0
        for b, w in enumerate(per_clip):
            clip = acts[at:at + w.shape[0]].reshape(-1, self.hidden_size)
            at += w.shape[0]
            out[b, :frames[b]] = clip[:frames[b]]
        feats = torch.from_numpy(out).to(device)
        mask = frame_mask(torch.tensor(frames, device=device), total)
        return EncoderOutput(hidden_states=feats[:, None].contiguous(), mask=mask)
