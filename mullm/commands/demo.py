"""``mullm demo``: chat with a model in the browser (Gradio).

    mullm demo --model offline-default            # http://127.0.0.1:7860
    mullm demo --model runs/quickstart/run/model --port 7861

Safe by default: it listens on 127.0.0.1 only, makes no share link unless ``--share``, and
turns off gradio's analytics and Hugging Face telemetry before anything is imported, with
the hub offline unless ``HF_HUB_OFFLINE=0`` is set. See docs/demo.md.
"""

from __future__ import annotations

import argparse
import sys

NAME = "demo"
HELP = ("Chat with a model in the browser: audio (upload, microphone) and images in, "
        "streamed answers, music output when the model has it.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--model", required=True,
                        help="model directory, config YAML or shipped config name "
                        "(offline-default)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (needs the internet)")
    parser.add_argument("--demo-config", metavar="YAML",
                        help="demo limits and defaults (keys of mullm.demo.DemoConfig)")
    parser.add_argument("--max-upload-mb", type=float, help="largest upload (MB)")
    parser.add_argument("--max-audio-s", type=float, help="longest clip accepted (seconds)")
    parser.add_argument("--long-audio", choices=["chunk", "first"],
                        help="clips longer than the model's window: chunk (whole track, "
                        "window by window) or first (its first window only)")
    parser.add_argument("--concurrency", type=int, help="answers generated at once")
    parser.add_argument("--max-new-tokens", type=int, help="default of the settings panel")
    parser.add_argument("--stand-in-music", action="store_true",
                        help="answer every turn with a stand-in tone (tries the music-output "
                        "UI without a music decoder)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda ...")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="dotted model-config override (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Load the model, build the page, serve until interrupted."""
    from mullm.demo.network import host_warning, safe_environment, share_notice

    safe_environment()  # before gradio / transformers / huggingface_hub are imported
    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    if args.share:
        print(share_notice(), file=sys.stderr)

    from mullm.demo.settings import load_demo_config
    from mullm.errors import MullmError

    try:
        config = load_demo_config(
            args.demo_config, max_upload_mb=args.max_upload_mb, max_audio_s=args.max_audio_s,
            long_audio=args.long_audio, concurrency=args.concurrency,
            max_new_tokens=args.max_new_tokens)
        model = _load_model(args.model, args.overrides, args.device)
    except (MullmError, ValueError, FileNotFoundError) as exc:
        print(f"mullm demo: error: {exc}", file=sys.stderr)
        return 2

    from mullm.demo.app import build_demo
    from mullm.demo.music import ToneMusic

    music = getattr(model, "render_music", None)
    if args.stand_in_music:
        music = ToneMusic()
        print("mullm demo: music output is the stand-in tone decoder (--stand-in-music)",
              file=sys.stderr)
    app = build_demo(model, config, music=music, model_name=str(args.model))
    try:
        url = app.launch(host=args.host, port=args.port, share=args.share, block=False,
                         quiet=True)
        where = "this machine only" if warning is None else f"every machine that reaches {url}"
        print(f"mullm demo: serving {args.model} at {url} ({where}); Ctrl+C stops it",
              flush=True)
        if app.share_url:
            print(f"mullm demo: public link (anyone who has it can use the model): "
                  f"{app.share_url}", flush=True)
        app.blocks.block_thread()  # until Ctrl+C
    except OSError as exc:
        print(f"mullm demo: error: cannot listen on {args.host}:{args.port} ({exc}); "
              "pass another --port", file=sys.stderr)
        return 2
    finally:
        app.close()
    return 0


def _load_model(source: str, overrides: list[str], device: str) -> object:
    """The model on ``device`` ("auto": CUDA when there is one), in eval mode."""
    import torch

    from mullm.model import MusicLLM

    model = MusicLLM.load(source, overrides or None)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()
