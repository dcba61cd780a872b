"""``mullm extract``: encode a manifest's audio once into a feature cache.

    mullm extract --config encoders/mert-95m --manifest music/ --out feats/

``--config`` is an encoder preset (EncoderConfig fields) or a model/training config, whose
audio encoder is used: a YAML path or a shipped config's name (``mullm configs``).
Rerunning into the same folder skips what is done; failed inputs go to OUT/errors.jsonl and
the run goes on. The exit status is non-zero only when nothing succeeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mullm.config import (
    EncoderConfig,
    apply_overrides,
    checked_from_dict,
    compose,
    from_dict,
    load_model_config,
    read_config,
    validate_encoder,
)
from mullm.errors import ConfigError, MullmError, OutputError, one_line
from mullm.utils.files import check_output_path

NAME = "extract"
HELP = "Encode audio files into a resumable feature cache (sharded safetensors + index)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--config", required=True,
                        help="encoder preset or model/training config: a YAML path or a "
                             "shipped config's name (e.g. encoders/mert-95m)")
    parser.add_argument("--manifest", required=True, nargs="+",
                        help="JSONL, metadata.jsonl, CSV, folder, glob or audio files")
    parser.add_argument("--out", required=True, help="cache folder (created; resumable)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="clips (or windows of long files) per encoder call")
    parser.add_argument("--layers", default="all",
                        help="layers to store: 'all' or comma-separated indices (e.g. -1 or "
                             "0,6,12); fewer layers make a smaller cache")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="storage dtype (default: the encoder's dtype)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--augment-tag", default=None,
                        help="tag recorded in every key when the inputs are augmented copies")
    parser.add_argument("--shard-mb", type=float, default=256.0, help="shard size in MiB")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", default=[],
                        help="dotted overrides of the encoder config, e.g. window_s=30")


def encoder_config_from_file(path: str, overrides: list[str] | None = None) -> EncoderConfig:
    """Read an encoder preset, or the audio encoder of a model/training config (a path or a
    shipped config's name)."""
    data, file = read_config(path)
    model_keys = {"llm", "modalities", "model"}
    if model_keys & set(compose(data, file)):
        cfg = load_model_config(file)
        if "audio" not in cfg.modalities:
            raise ConfigError(f"{file}: the model has no audio modality to extract "
                              f"(modalities: {sorted(cfg.modalities)})")
        enc = cfg.modalities["audio"].encoder
        if overrides:
            raw = apply_overrides(dataclasses.asdict(enc), overrides, EncoderConfig)
            enc = from_dict(EncoderConfig, raw, prefix="encoder")
    else:
        data = compose(apply_overrides(data, overrides or [], EncoderConfig), file)
        enc = checked_from_dict(EncoderConfig, data, str(file), prefix="encoder")
    validate_encoder(enc)
    return enc


def _parse_layers(text: str) -> str | list[int]:
    if text.strip() == "all":
        return "all"
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--layers {text!r}: expected 'all' or indices like 0,6,12") from None


def main(args: argparse.Namespace) -> int:
    """Run the extraction and print a summary; 1 when nothing succeeded."""
    import torch

    from mullm.data.manifest import read_manifest
    from mullm.encoders import build_encoder
    from mullm.features import extract_features

    try:
        enc_cfg = encoder_config_from_file(args.config, args.overrides)
        notes: list[str] = []
        items = read_manifest(args.manifest, notes)
        for note in notes:
            print(note, file=sys.stderr)
        check_output_path(args.out, folder=True, error=OutputError)  # before the encoder
        encoder = build_encoder(enc_cfg).to(torch.device(args.device))
        summary = extract_features(
            encoder, [i.path for i in items], args.out, ids=[i.id for i in items],
            batch_size=args.batch_size, layers=_parse_layers(args.layers), dtype=args.dtype,
            augment=args.augment_tag, shard_mb=args.shard_mb, progress=not args.no_progress)
    except (MullmError, ValueError, OSError) as exc:
        print(f"mullm extract: error: {one_line(exc)}", file=sys.stderr)
        return 2
    rate = summary.audio_seconds / summary.seconds if summary.seconds > 0 else 0.0
    print(f"{enc_cfg.name}: {summary.extracted} extracted, {summary.skipped} already cached, "
          f"{summary.failed} failed ({summary.silent} silent) in {summary.seconds:.1f} s, "
          f"{rate:.1f} audio-s/s -> {Path(args.out)}")
    if summary.failed:
        print(f"failures: {Path(args.out) / 'errors.jsonl'}", file=sys.stderr)
        for rec in summary.errors[:5]:
            print(f"  {rec['error']}", file=sys.stderr)
    return 0 if summary.succeeded > 0 else 1
