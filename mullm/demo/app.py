"""The Gradio page: layout, events, queue, and a launch that is safe by default.

``build_demo(model, ...)`` returns a ``DemoApp``; ``DemoApp.launch()`` serves it on
127.0.0.1 with no share link, analytics off, server-side rendering and the MCP server off,
the upload size limit from the config, and file access limited to the demo's own folder.
Named API endpoints (``/send``, ``/stop``, ``/clear``, ``/export``, ``/attach_generated``)
let ``gradio_client`` drive the page as a browser does.
"""

# No ``from __future__ import annotations`` here: gradio reads the ``gr.Request`` annotation
# of each event handler at run time to pass the request (and its session id).
import copy
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from mullm.demo.chat import EVERYTHING, ChatEngine
from mullm.demo.media import fmt_time
from mullm.demo.music import MusicHook
from mullm.demo.network import safe_environment
from mullm.demo.session import SessionStore
from mullm.demo.settings import DemoConfig

if TYPE_CHECKING:
    from mullm.model import MusicLLM

def _header(engine: ChatEngine, config: DemoConfig) -> str:
    spec = engine.audio_spec
    lines = [f"## mullm chat: `{engine.model_name}`"]
    if spec is not None:
        long = ("heard window by window, each window described, then summarised"
                if config.long_audio == "chunk" else "only the first window is used")
        lines.append(
            f"Audio: the model hears up to **{spec.max_duration_s:g} s** at "
            f"{spec.sample_rate} Hz per clip; longer clips (up to "
            f"{fmt_time(config.max_audio_s)}) are {long}. Uploads up to "
            f"{config.max_upload_mb:g} MB; {engine.max_clips} clips per conversation.")
    if engine.has_image:
        lines.append("Images can be attached too.")
    if engine.music is not None:
        lines.append("Music output is on: generated clips appear in the chat.")
    return "\n\n".join(lines)


@dataclass(eq=False)  # one page, one server: compared by identity
class DemoApp:
    """The built page with its engine and sessions; ``launch`` serves it."""

    blocks: gr.Blocks
    engine: ChatEngine
    store: SessionStore
    config: DemoConfig
    workdir: Path
    owns_workdir: bool  # build_demo made the folder: close() deletes it
    share_url: str | None = None  # set by launch(share=True)

    def launch(self, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
               block: bool = True, quiet: bool = False) -> str:
        """Serve the page and return its local URL; with ``block``, only after serving
        until interrupted (Ctrl+C).

        Args:
            host: interface to bind; anything but loopback exposes the demo to the network.
            port: TCP port; None picks a free one from 7860 up.
            share: ask gradio for a public share link (needs the internet).
            block: keep serving until interrupted (False: return at once, for tests).
            quiet: print nothing (gradio prints the URL otherwise).

        Raises:
            OSError: the port is taken.
        """
        # Gradio reads these while launching (mullm demo sets them before any import).
        safe_environment()
        _, local_url, self.share_url = self.blocks.launch(
            server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
            quiet=quiet, show_error=False, ssr_mode=False, mcp_server=False, pwa=False,
            enable_monitoring=False, max_file_size=self.config.max_upload_bytes,
            allowed_paths=[str(self.workdir)], footer_links=["api"])
        return local_url

    def close(self) -> None:
        """Stop serving and delete the demo's files (when it made its own folder)."""
        self.blocks.close()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def build_demo(model: "MusicLLM", config: DemoConfig | None = None, music: MusicHook | None = None,
               model_name: str | None = None, workdir: str | Path | None = None) -> DemoApp:
    """Build the chat page for ``model``.

    Args:
        model: the one model every session shares.
        config: limits and defaults (``DemoConfig()`` when None).
        music: optional music hook (``mullm.demo.music``); ``model.render_music`` in the CLI.
        model_name: shown in the header and recorded in exports.
        workdir: folder for uploads, spectrograms, generated clips and exports; a new
            temporary folder (deleted by ``close``) when None.
    """
    config = (config or DemoConfig()).validate()
    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="mullm-demo-") if owns else workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    engine = ChatEngine(model, config, music, model_name or "")
    store = SessionStore(root / "sessions", config.long_audio, config.max_sessions)
    ctx = engine.model.context_length or 2048

    with gr.Blocks(title="mullm chat", analytics_enabled=False) as blocks:
        gr.Markdown(_header(engine, config))
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=520, buttons=["copy"],
                                     feedback_options=None, elem_id="chat")
                box = gr.MultimodalTextbox(
                    placeholder="Ask about the music; attach audio or images with the clip "
                    "button", file_count="multiple", sources=["upload"], elem_id="message",
                    show_label=False)
                with gr.Row():
                    stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop")
                    use_gen = gr.Button("Use last generated clip", size="sm",
                                        elem_id="use-generated",
                                        visible=engine.music is not None)
                    clear = gr.Button("Clear", size="sm", elem_id="clear")
                    export = gr.Button("Export JSONL", size="sm", elem_id="export")
                status = gr.Markdown("", elem_id="status")
                files = gr.File(label="Exported conversation", file_count="multiple",
                                interactive=False, visible=False)
            with gr.Column(scale=2):
                mic = gr.Audio(sources=["microphone", "upload"], type="filepath",
                               label="Record a clip (sent with your next message)")
                with gr.Accordion("Generation settings", open=False):
                    max_new = gr.Slider(1, min(ctx, 1024), value=config.max_new_tokens, step=1,
                                        label="Max new tokens")
                    temperature = gr.Slider(0.0, 2.0, value=config.temperature, step=0.05,
                                            label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=config.top_p, step=0.05, label="Top-p")
                    seed = gr.Number(value=config.seed, precision=0,
                                     label="Seed (empty = a new one each answer)")
                gr.Markdown("### What the model heard")
                heard = gr.Markdown("No clips yet.", elem_id="heard")
                picture = gr.Image(label="Spectrograms at the model's sample rate",
                                   type="filepath", interactive=False, elem_id="spectrograms",
                                   buttons=["download", "fullscreen"])

        def send(message: dict | None, recording: str | None, n: Any, t: Any, p: Any, s: Any,
                 request: gr.Request) -> Any:
            session = store.get(request.session_hash)
            message = message or {}
            uploads = [f if isinstance(f, str) else f.get("path")
                       for f in message.get("files") or []]
            first = True
            try:
                for what in engine.respond(session, message.get("text"), uploads, recording,
                                           (n, t, p, s)):
                    box_out = gr.MultimodalTextbox(value=None) if first else gr.skip()
                    mic_out = None if first else gr.skip()
                    first = False
                    if what == EVERYTHING:
                        yield (copy.deepcopy(session.display), box_out, mic_out,
                               session.heard_markdown(), session.heard_picture())
                    else:
                        yield copy.deepcopy(session.display), box_out, mic_out, gr.skip(), \
                            gr.skip()
            except GeneratorExit:
                session.stop.set()  # the page went away or the event was cancelled
                raise

        def on_stop(request: gr.Request) -> str:
            store.get(request.session_hash).stop.set()
            return "Stopping."

        def on_clear(request: gr.Request) -> Any:
            session = store.get(request.session_hash)
            session.clear()
            return ([], gr.MultimodalTextbox(value=None), None, session.heard_markdown(), None,
                    gr.File(value=None, visible=False), "")

        def on_export(request: gr.Request) -> Any:
            from mullm.demo.export import export_session

            session = store.get(request.session_hash)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = root / "exports" / f"{request.session_hash[:8] or 'chat'}-{stamp}"
            try:
                jsonl, archive = export_session(session, out, engine.model_name)
            except ValueError as exc:
                return gr.File(value=None, visible=False), f"Export: {exc}."
            return gr.File(value=[str(jsonl), str(archive)], visible=True), (
                f"Exported {len(session.turns)} turn(s): `conversation.jsonl` and a zip with "
                "its audio.")

        def on_attach(request: gr.Request) -> Any:
            session = store.get(request.session_hash)
            return engine.attach_last_generated(session), session.heard_markdown()

        inputs = [box, mic, max_new, temperature, top_p, seed]
        box.submit(send, inputs, [chatbot, box, mic, heard, picture], api_name="send")
        # Not queued: Stop must act at once, also when the queue is full.
        stop.click(on_stop, None, [status], api_name="stop", queue=False)
        cleared = [chatbot, box, mic, heard, picture, files, status]
        clear.click(on_clear, None, cleared, api_name="clear")
        chatbot.clear(on_clear, None, cleared, api_name=False)  # the chat's own bin icon
        export.click(on_export, None, [files, status], api_name="export")
        use_gen.click(on_attach, None, [status, heard], api_name="attach_generated")

    blocks.queue(default_concurrency_limit=config.concurrency, max_size=config.max_queue)
    return DemoApp(blocks, engine, store, config, root, owns)


__all__ = ["DemoApp", "build_demo"]
