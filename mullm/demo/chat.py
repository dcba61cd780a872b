"""The demo's turn logic: check the user's files, hear long clips, stream the answer, add music.

``ChatEngine.respond`` is a generator that updates a ``ChatSession`` and yields after every
visible change (the app then sends the chat to the browser). It never raises for anything a
user can cause: a bad file, a prompt too long for the model's context or a failing music
decoder becomes a notice in the chat, and the session goes on. Unexpected errors are logged
with their traceback on the server and shown to the user as one line.

One model serves every session: the model keeps each call's media state in a ContextVar, so
concurrent answers do not mix clips; the app's queue bounds how many run at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mullm.demo.media import (
    DECODABLE,
    Clip,
    ImageItem,
    UploadRejected,
    accept_audio,
    accept_image,
    draw_spectrogram,
    fmt_time,
    kind_of,
)
from mullm.demo.music import MusicHook, check_clips
from mullm.demo.session import ChatSession, GeneratedClip, Turn
from mullm.demo.settings import DemoConfig, TurnSettings
from mullm.errors import MullmError
from mullm.outputs.vocab import strip_output_tokens

if TYPE_CHECKING:
    from mullm.model import MusicLLM

log = logging.getLogger("mullm.demo")

# What respond() yields: which parts of the page changed.
CHAT = "chat"          # only the chat messages
EVERYTHING = "all"     # the chat and the "what the model heard" panel


def stop_criterion(event: Any) -> Any:
    """A ``transformers.StoppingCriteriaList`` that ends generation once ``event`` is set
    (checked after every generated token)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor,
                     **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool,
                              device=input_ids.device)

    return StoppingCriteriaList([StopOnEvent()])


class ChatEngine:
    """Answers turns of ``ChatSession``s with one shared model.

    Args:
        model: the ``MusicLLM`` (put in eval mode here: concurrent ``generate_text`` calls
            would otherwise race on its train/eval flag).
        config: limits and defaults.
        music: the optional music hook (``mullm.demo.music``), called after each reply.
        model_name: how the model is named in exports.
    """

    def __init__(self, model: MusicLLM, config: DemoConfig, music: MusicHook | None = None,
                 model_name: str = "") -> None:
        self.model = model.eval()
        self.config = config
        self.music = music
        self.model_name = model_name or str(model.config.llm.name_or_path)
        specs = model.processor.specs
        self.audio_spec = specs.get("audio")
        self.has_image = "image" in specs
        # Encoders with their own pixel preprocessing read files; the others get tensors.
        self.image_as_tensor = self.has_image and specs["image"].image_spec is None
        self.max_clips = self.audio_spec.max_items if self.audio_spec else 0
        self.max_images = specs["image"].max_items if self.has_image else 0

    # ------------------------------------------------------------------ public
    def respond(self, session: ChatSession, text: str | None, uploads: list[str],
                recording: str | None, settings: tuple[Any, Any, Any, Any]
                ) -> Iterator[str]:
        """Answer one user message; yield ``CHAT`` or ``EVERYTHING`` after each change.

        Args:
            session: the conversation.
            text: what the user typed.
            uploads: paths of files attached to the message (their names are the user's).
            recording: path of a microphone recording to attach, or None.
            settings: (max new tokens, temperature, top-p, seed) from the settings panel.
        """
        if not session.busy.acquire(blocking=False):
            session.show("assistant", "Still answering your previous message: wait for it "
                         "or press Stop, then send again.", title="Busy")
            yield CHAT
            return
        try:
            yield from self._respond(session, (text or "").strip(), uploads, recording,
                                     settings)
        finally:
            session.busy.release()

    def attach_last_generated(self, session: ChatSession) -> str:
        """Attach the newest generated clip to the session's next message; a status line."""
        if not session.generated:
            return "There is no generated clip yet."
        clip = session.generated[-1]
        if clip not in session.pending:
            session.pending.append(clip)
        return f"Generated clip {clip.number} will be attached to your next message."

    # ------------------------------------------------------------------ steps
    def _respond(self, session: ChatSession, text: str, uploads: list[str],
                 recording: str | None, raw_settings: tuple[Any, Any, Any, Any]
                 ) -> Iterator[str]:
        session.stop.clear()  # a Stop pressed before this message does not apply to it
        try:
            settings = TurnSettings.from_ui(*raw_settings)
        except ValueError as exc:
            session.show("assistant", f"Generation settings: {exc}.", title="Not sent")
            yield CHAT
            return
        given = [(p, Path(p).name, "upload") for p in uploads]
        if recording:
            given.append((recording, f"recording-{len(session.clips) + 1}.wav", "microphone"))
        given += [(str(g.path), g.path.name, "generated") for g in session.pending]
        if not text and not given:
            session.show("assistant", "Type a message or attach a clip first.", title="Not sent")
            yield CHAT
            return
        session.show("user", text or "(no text)")
        yield CHAT
        try:
            clips, images = self._accept(session, given)
        except UploadRejected as exc:
            session.show("assistant", f"{exc}\n\nNothing was sent to the model; the "
                         "conversation goes on.", title="Could not use a file")
            yield CHAT
            return
        session.pending.clear()
        for c in clips:
            session.show_file("user", c.path, "audio/wav", alt=c.name)
        for i in images:
            session.show_file("user", i.path, "image/png", alt=i.name)
        turn = Turn(text=text, clips=clips, images=images, settings=settings)
        yield EVERYTHING
        if self.config.long_audio == "chunk":
            for clip in clips:
                if clip.long:
                    ok = yield from self._hear_whole_track(session, clip, settings)
                    if not ok:
                        return
        yield from self._answer(session, turn, settings)

    def _accept(self, session: ChatSession, given: list[tuple[str, str, str]]
                ) -> tuple[list[Clip], list[ImageItem]]:
        """Check every file of a message; raise UploadRejected listing all problems."""
        clips: list[Clip] = []
        images: list[ImageItem] = []
        problems: list[str] = []
        for path, name, source in given:
            kind = "audio" if source != "upload" else kind_of(name)
            try:
                if kind == "audio":
                    if self.audio_spec is None:
                        raise UploadRejected(f"Could not use {name}: this model takes no audio.")
                    if len(session.clips) + len(clips) >= self.max_clips:
                        raise UploadRejected(
                            f"Could not use {name}: this model takes at most {self.max_clips} "
                            "clips per conversation; press Clear to start a new one.")
                    clips.append(accept_audio(
                        path, name, session.next_clip_index(len(clips)), source,
                        self.audio_spec, self.config, session.folder / "audio"))
                elif kind == "image":
                    if not self.has_image:
                        raise UploadRejected(f"Could not use {name}: this model takes no "
                                             "images (it has no image encoder).")
                    if len(session.images) + len(images) >= self.max_images:
                        raise UploadRejected(f"Could not use {name}: this model takes at most "
                                             f"{self.max_images} images per conversation.")
                    images.append(accept_image(path, name, len(session.images) + len(images) + 1,
                                               self.config, session.folder / "images",
                                               as_tensor=self.image_as_tensor))
                else:
                    raise UploadRejected(
                        f"Could not use {name}: not an audio or image file. Audio: {DECODABLE}"
                        "; images: PNG, JPEG, WebP, GIF, BMP, TIFF.")
            except UploadRejected as exc:
                problems.append(str(exc))
        if problems:
            raise UploadRejected("\n\n".join(problems))
        return clips, images

    def _hear_whole_track(self, session: ChatSession, clip: Clip, settings: TurnSettings
                          ) -> Iterator[str]:
        """Caption a long clip window by window and summarise it (``mullm.caption``);
        returns False (after a notice) when that fails."""
        from mullm.caption import caption_files

        n = int(-(-clip.duration_s // clip.window_s))
        note = session.show(
            "assistant", f"{clip.name} is {fmt_time(clip.duration_s)} long, longer than the "
            f"model's {clip.window_s:g} s window: describing each of its ~{n} windows, then "
            "the whole track.", title=f"Listening to all of clip {clip.index}",
            status="pending")
        yield CHAT
        gen = settings.generate_kwargs()
        try:
            [record] = caption_files(
                self.model, [clip.path], max_new_tokens=min(settings.max_new_tokens, 64),
                do_sample=gen["do_sample"], temperature=gen.get("temperature", 1.0),
                top_p=gen.get("top_p", 1.0), seed=settings.seed)
        except Exception as exc:  # noqa: BLE001 - shown in the chat, logged with traceback
            log.exception("captioning %s failed", clip.path)
            record = {"error": f"{type(exc).__name__}: {exc}"}
        if record.get("error"):
            note["metadata"]["status"] = "done"
            note["content"] = (f"Could not hear all of {clip.name}: {record['error']}. "
                               "Nothing was sent to the model; the conversation goes on.")
            yield CHAT
            return False
        clip.description = record["caption"]
        clip.segments = list(record["segments"])
        clip.spectrogram = draw_spectrogram(clip, session.long_audio, clip.path.parent)
        note["metadata"]["status"] = "done"
        note["content"] = clip.prompt_text().strip("[]")
        yield EVERYTHING
        return True

    def _answer(self, session: ChatSession, turn: Turn, settings: TurnSettings
                ) -> Iterator[str]:
        """Stream the reply to ``turn`` after the session's history; then the music."""
        from mullm.streaming import stream_chat

        history = session.history()
        media = session.model_media(session.turns + [turn])
        prompt = turn.user_content(session.long_audio)
        msg = session.show("assistant", "")
        pieces: list[str] = []
        try:
            for piece in stream_chat(self.model, prompt, audio=media.get("audio"),
                                     image=media.get("image"), history=history,
                                     stopping_criteria=stop_criterion(session.stop),
                                     **settings.generate_kwargs()):
                pieces.append(piece)
                msg["content"] = strip_output_tokens("".join(pieces))
                yield CHAT
        except (MullmError, ValueError) as exc:
            session.display.remove(msg)
            session.show("assistant", f"The model could not answer: {exc}. The conversation "
                         "is kept; press Clear if it has grown too long.", title="No answer")
            yield CHAT
            return
        except Exception as exc:  # noqa: BLE001 - the user sees one line, the log the trace
            log.exception("generation failed")
            session.display.remove(msg)
            session.show("assistant", f"Something went wrong while answering "
                         f"({type(exc).__name__}: {exc}). The conversation is kept; try "
                         "again.", title="No answer")
            yield CHAT
            return
        turn.reply = "".join(pieces).strip()
        turn.stopped = session.stop.is_set()
        if turn.stopped and not turn.reply:
            session.display.remove(msg)
            session.show("assistant", "Stopped before any text; this message was not kept. "
                         "Send it again to get an answer.", title="Stopped")
            yield CHAT
            return
        # The output tokens stay in the history (they are what render_music reads, and the
        # export keeps them as training data); the chat shows the words.
        shown = strip_output_tokens(turn.reply)
        if turn.reply and not shown:
            shown = "(music, below)"
        msg["content"] = shown or "(the model gave an empty reply)"
        if turn.stopped:
            msg["content"] += "\n\n*(stopped)*"
        session.turns.append(turn)
        yield EVERYTHING
        if self.music is not None and not turn.stopped:
            yield from self._music(session, turn)

    def _music(self, session: ChatSession, turn: Turn) -> Iterator[str]:
        """Call the music hook on the conversation so far; show and keep its clips."""
        from mullm.audio import write_wav

        try:
            clips = check_clips(self.music(session.history(), session.model_media(session.turns)))
        except Exception as exc:  # noqa: BLE001 - a decoder failure must not end the chat
            log.exception("music output failed")
            session.show("assistant", f"The music output failed ({type(exc).__name__}: "
                         f"{exc}); the text answer above stands.", title="No music")
            yield CHAT
            return
        for clip in clips:
            number = len(session.generated) + 1
            path = write_wav(session.folder / "generated" / f"gen-{number}.wav",
                             clip.waveform, clip.sample_rate)
            g = GeneratedClip(number, path, clip.mode, clip.duration_s, clip.sample_rate,
                              clip.request, dict(clip.meta))
            session.generated.append(g)
            turn.generated.append(g)
            session.show_file("assistant", path, "audio/wav", alt=f"generated clip {number}")
            session.show("assistant", f"Generated clip {number} (mode: {clip.mode}, "
                         f"{clip.duration_s:.1f} s). Press \"Use last generated clip\" to "
                         "attach it to your next message and ask for changes.")
        if clips:
            yield CHAT


__all__ = ["CHAT", "EVERYTHING", "ChatEngine", "stop_criterion"]
