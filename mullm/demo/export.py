"""Export a demo conversation as JSONL in the project's conversation schema (with its media).

The export is a folder (and a zip of it)::

    conversation.jsonl      one conversation, validated by mullm.data.schema
    audio/01-song.wav       every clip given in the chat, in <audio> order
    images/01-cover.png     every image, in <image> order
    generated/gen-1.wav     clips the music output returned

Media paths in the JSONL are relative to its folder, so the folder (or the unzipped archive)
is training or evaluation data as it stands. Each clip keeps its ``<audio>`` marker in the
turn where it was given, also a long clip the model heard as a whole-track description;
``meta`` records how it was heard, the generation settings of each answer, and the
generated clips.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from mullm.demo.session import ChatSession


def conversation_record(session: ChatSession, model_name: str, conv_id: str) -> dict[str, Any]:
    """The schema object for ``session`` (paths relative to the export folder).

    Raises:
        ValueError: the conversation has no answered turn yet (nothing to export).
    """
    if not session.turns:
        raise ValueError("there is nothing to export yet: ask something first")
    turns: list[dict[str, str]] = []
    per_turn: list[dict[str, Any]] = []
    for t in session.turns:
        turns.append({"role": "user", "content": t.user_content(session.long_audio,
                                                                  for_model=False)})
        turns.append({"role": "assistant", "content": t.reply})
        per_turn.append({
            "settings": t.settings.to_dict() if t.settings else None,
            "stopped": t.stopped,
            "generated_audio": [{"path": f"generated/{g.path.name}", "mode": g.mode,
                                 "duration_s": round(g.duration_s, 3),
                                 "sample_rate": g.sample_rate, "meta": g.meta}
                                for g in t.generated],
        })
    clips = [{"index": c.index, "name": c.name, "source": c.source,
              "duration_s": round(c.duration_s, 3), "long": c.long,
              **({"heard_as": session.long_audio} if c.long else {}),
              **({"description": c.description, "segments": c.segments}
                 if c.long and c.description is not None else {})}
             for c in session.clips]
    any_music = any(p["generated_audio"] for p in per_turn)
    return {
        "id": conv_id,
        "audio": [f"audio/{c.path.name}" for c in session.clips],
        "images": [f"images/{i.path.name}" for i in session.images],
        "turns": turns,
        "task": "generate" if any_music else "chat",
        "split": None,
        "source": "mullm-demo",
        "meta": {"model": model_name, "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "clips": clips, "turns": per_turn},
    }


def export_session(session: ChatSession, out_dir: Path, model_name: str) -> tuple[Path, Path]:
    """Write ``out_dir/conversation.jsonl`` with its media, and ``out_dir.zip``.

    Returns:
        (path of the JSONL file, path of the zip archive).

    Raises:
        ValueError: nothing to export yet.
        mullm.errors.DataError: the record does not pass the schema validator (a bug).
    """
    from mullm.data.schema import validate_conversation, write_conversations

    conv_id = f"demo-{out_dir.name}"
    record = conversation_record(session, model_name, conv_id)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for sub, items in (("audio", [c.path for c in session.clips]),
                       ("images", [i.path for i in session.images]),
                       ("generated", [g.path for t in session.turns for g in t.generated])):
        if items:
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
        for src in items:
            shutil.copyfile(src, out_dir / sub / src.name)
    # Validate against the same rules training uses, files included, before writing.
    conv = validate_conversation(record, base_dir=out_dir, where="demo export")
    jsonl = out_dir / "conversation.jsonl"
    write_conversations(jsonl, [conv])
    archive = out_dir.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(out_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(out_dir.parent))
    return jsonl, archive


__all__ = ["conversation_record", "export_session"]
