"""One browser session's conversation: turns, their media, and what the chat shows.

``ChatSession`` holds the model-side conversation (what goes back to the model every turn)
and the display-side messages (what the chatbot shows) separately: notices about rejected
files or errors are shown but never sent to the model, and a clip stays attached to the turn
in which it was given. ``SessionStore`` keeps one session per gradio session id, bounded.
Nothing here imports gradio.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mullm.demo.media import Clip, ImageItem, fmt_time
from mullm.demo.settings import TurnSettings
from mullm.media import MARKERS


@dataclass
class GeneratedClip:
    """A clip the music hook returned: saved as WAV, shown, and attachable to a turn."""

    number: int
    path: Path
    mode: str
    duration_s: float
    sample_rate: int
    request: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Turn:
    """One user message with its media, and the reply it got."""

    text: str
    clips: list[Clip] = field(default_factory=list)
    images: list[ImageItem] = field(default_factory=list)
    reply: str = ""
    settings: TurnSettings | None = None
    stopped: bool = False
    generated: list[GeneratedClip] = field(default_factory=list)

    def user_content(self, long_audio: str, for_model: bool = True) -> str:
        """The user message with one ``<audio>`` / ``<image>`` marker per item, in order.

        ``for_model``: a long clip heard in windows (``long_audio="chunk"``) is replaced by
        its whole-track description, the text the model actually reads; otherwise (the
        export) every clip keeps its marker so the data points at the real audio.
        """
        parts = []
        for c in self.clips:
            if for_model and c.model_input(long_audio) is None:
                parts.append(c.prompt_text())
            else:
                parts.append(MARKERS["audio"])
        parts += [MARKERS["image"]] * len(self.images)
        if self.text:
            parts.append(self.text)
        return "\n".join(parts)


class ChatSession:
    """The state of one conversation (one browser tab).

    Attributes:
        folder: where this session's copies of uploads, spectrograms and generated clips go.
        turns: finished turns, each sent back to the model as history.
        display: the chatbot's messages (``{"role", "content", "metadata"?}`` dicts).
        pending: generated clips attached to the next message (the editing loop).
        generated: every clip the music hook returned, in order.
        stop: set by the Stop button; the running generation's stopping criterion reads it.
        busy: held while an answer is being generated (one at a time per session).
    """

    def __init__(self, folder: Path, long_audio: str) -> None:
        self.folder = folder
        self.long_audio = long_audio
        self.turns: list[Turn] = []
        self.display: list[dict[str, Any]] = []
        self.pending: list[GeneratedClip] = []
        self.generated: list[GeneratedClip] = []
        self.stop = threading.Event()
        self.busy = threading.Lock()
        self._pictures = 0

    # ------------------------------------------------------------------ media
    @property
    def clips(self) -> list[Clip]:
        """Every clip of the finished turns, in ``<audio>`` order."""
        return [c for t in self.turns for c in t.clips]

    @property
    def images(self) -> list[ImageItem]:
        """Every image of the finished turns, in ``<image>`` order."""
        return [i for t in self.turns for i in t.images]

    def next_clip_index(self, extra: int = 0) -> int:
        """The 1-based index the next clip gets (``extra`` already taken this turn)."""
        return len(self.clips) + extra + 1

    def model_media(self, turns: list[Turn]) -> dict[str, list]:
        """What ``turns``' markers stand for: {"audio": waveforms, "image": paths or
        tensors}."""
        audio = [x for t in turns for c in t.clips
                 if (x := c.model_input(self.long_audio)) is not None]
        images = [i.model_input() for t in turns for i in t.images]
        out: dict[str, list] = {}
        if audio:
            out["audio"] = audio
        if images:
            out["image"] = images
        return out

    def history(self) -> list[dict[str, str]]:
        """The finished turns as model messages (user with markers, assistant reply)."""
        out = []
        for t in self.turns:
            out.append({"role": "user", "content": t.user_content(self.long_audio)})
            out.append({"role": "assistant", "content": t.reply})
        return out

    # ------------------------------------------------------------------ display
    def show(self, role: str, content: Any, title: str | None = None,
             status: str | None = None) -> dict[str, Any]:
        """Append a chat message (``title`` makes it a collapsible notice); return it so
        the caller can update it in place while streaming."""
        msg: dict[str, Any] = {"role": role, "content": content}
        if title is not None:
            msg["metadata"] = {"title": title}
            if status is not None:
                msg["metadata"]["status"] = status
        self.display.append(msg)
        return msg

    def show_file(self, role: str, path: Path, mime: str, alt: str | None = None) -> None:
        """Append a file (an audio player in the chat)."""
        content: dict[str, Any] = {"path": str(path), "mime_type": mime}
        if alt:
            content["alt_text"] = alt
        self.display.append({"role": role, "content": content})

    def heard_markdown(self) -> str:
        """What the model heard, clip by clip (Markdown), including attached clips."""
        lines = [c.heard(self.long_audio) for c in self.clips]
        lines += [i.heard() for i in self.images]
        lines += [f"*Attached to your next message:* generated clip {g.number} "
                  f"({g.duration_s:.2f} s, mode: {g.mode})" for g in self.pending]
        if not lines:
            return "No clips yet. Attach audio (upload or record) to your message."
        return "\n\n".join(f"- {line}" for line in lines)

    def heard_picture(self) -> str | None:
        """One PNG with every clip's spectrogram under its label (None before any clip)."""
        from mullm.demo.spectrogram import stack_pictures

        items = [(c.spectrogram, f"Clip {c.index}: {c.name}  ({fmt_time(c.duration_s)})")
                 for c in self.clips if c.spectrogram is not None]
        if not items:
            return None
        self._pictures += 1  # a new name each time: browsers cache images by URL
        return str(stack_pictures(items, self.folder / f"heard-{self._pictures}.png"))

    def clear(self) -> None:
        """Forget the conversation and delete its files (the folder is reused)."""
        self.stop.set()  # an answer still running stops at its next token
        self.turns.clear()
        self.display.clear()
        self.pending.clear()
        self.generated.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class SessionStore:
    """One ``ChatSession`` per gradio session id, at most ``capacity`` (least recently used
    sessions beyond it are forgotten and their files deleted). Thread-safe."""

    def __init__(self, root: Path, long_audio: str, capacity: int) -> None:
        self.root = root
        self.long_audio = long_audio
        self.capacity = capacity
        self._sessions: OrderedDict[str, ChatSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ChatSession:
        """The session for ``key``, created on first use."""
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                safe = "".join(ch for ch in key if ch.isalnum())[:32] or "anon"
                session = ChatSession(self.root / safe, self.long_audio)
                self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.capacity:
                _, old = self._sessions.popitem(last=False)
                old.clear()
            return session

    def drop(self, key: str) -> None:
        """Forget a session (its tab closed) and delete its files."""
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.clear()

    def __len__(self) -> int:
        return len(self._sessions)


__all__ = ["ChatSession", "GeneratedClip", "SessionStore", "Turn"]
