"""Converters: each public format, from a handwritten sample in that exact format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mullm.cli import main as cli
from mullm.data.converters import convert
from mullm.data.schema import read_conversations
from mullm.errors import DataError

DATA = Path(__file__).parent / "data"


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800, dtype=np.float32), 16000)


def _run(tmp_path: Path, fmt: str, sample: str, wavs: list[str], **kw) -> list:
    src = tmp_path / "in" / sample
    src.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / sample, src)
    for w in wavs:
        _wav(tmp_path / "audio" / w)
    out = tmp_path / "out" / "conv.jsonl"
    written, bad = convert(fmt, src, out, audio_root=tmp_path / "audio", **kw)
    assert bad == 0
    convs = read_conversations(out)  # the output passes the schema, audio paths resolve
    assert len(convs) == written
    return convs


def test_musiccaps(tmp_path: Path) -> None:
    convs = _run(tmp_path, "musiccaps", "musiccaps_sample.csv",
                 ["-0Gj8-vB1q4.wav", "-0SdAVK79lg.wav", "-0vPFx-wRRI.wav"])
    caps = [c for c in convs if c.task == "caption"]
    assert len(caps) == 3 and len(convs) == 6  # caption + aspect tags per row
    assert caps[0].split == "test" and caps[1].split == "train"  # is_audioset_eval
    assert caps[0].turns[1]["content"].startswith("The low quality recording")
    tags = next(c for c in convs if c.id == "musiccaps--0Gj8-vB1q4-aspects")
    assert tags.turns[1]["content"].startswith("low quality, sustained strings melody")
    assert caps[0].audio == ["../audio/-0Gj8-vB1q4.wav"]


def test_musiccaps_template(tmp_path: Path) -> None:
    convs = _run(tmp_path, "musiccaps", "musiccaps_sample.csv",
                 ["[-0Gj8-vB1q4]-[30-40].wav", "[-0SdAVK79lg]-[30-40].wav",
                  "[-0vPFx-wRRI]-[30-40].wav"], audio_template="[{ytid}]-[{start_s}-{end_s}].wav")
    assert convs[0].audio_paths()[0].name == "[-0Gj8-vB1q4]-[30-40].wav"


def test_musicqa(tmp_path: Path) -> None:
    convs = _run(tmp_path, "musicqa", "musicqa_sample.json", ["000001.wav", "000002.wav"])
    # One id per question-answer entry: the clip plus a hash of the entry's text.
    assert [c.id.rsplit("-", 1)[0] for c in convs] == ["musicqa-000001", "musicqa-000002"]
    assert all(len(c.id.rsplit("-", 1)[1]) == 10 for c in convs)
    assert convs[0].turns == [
        {"role": "user", "content": "What is the mood of this music?"},
        {"role": "assistant", "content": "The music has a calm and relaxing mood, with soft "
                                         "piano and gentle strings."}]


def test_musicinstruct(tmp_path: Path) -> None:
    convs = _run(tmp_path, "musicinstruct", "musicinstruct_sample.json",
                 ["-0Gj8-vB1q4.wav", "-0SdAVK79lg.wav"])
    assert [c.split for c in convs] == ["test", "train"]
    assert "tempo" in convs[0].turns[0]["content"]


def test_lpmusiccaps(tmp_path: Path) -> None:
    convs = _run(tmp_path, "lpmusiccaps", "lpmusiccaps_sample.jsonl",
                 ["[-0Gj8-vB1q4]-[30-40].wav", "[-0SdAVK79lg]-[30-40].wav"],
                 audio_template="{fname}.wav")
    assert len(convs) == 8  # four caption kinds per row
    kinds = {c.id.rsplit("-", 1)[1] for c in convs}
    assert kinds == {"writing", "summary", "paraphrase", "attribute_prediction"}


def test_songdescriber(tmp_path: Path) -> None:
    convs = _run(tmp_path, "songdescriber", "songdescriber_sample.csv",
                 ["20/1220.2min.mp3", "88/5588.2min.mp3"])
    assert [c.id for c in convs] == ["songdescriber-1", "songdescriber-2", "songdescriber-3"]
    assert convs[0].meta["is_valid_subset"] is True and convs[1].meta["is_valid_subset"] is False


def test_llark(tmp_path: Path) -> None:
    convs = _run(tmp_path, "llark", "llark_sample.json", ["2217.wav", "fma_000123.wav"])
    assert [c.id.rsplit("-", 1)[0] for c in convs] == ["llark-2217", "llark-2217",
                                                         "llark-fma_000123"]
    assert len({c.id for c in convs}) == 3
    assert convs[0].turns[1]["content"] == "The piece is in D major."


def test_muchomusic_prompt_json(tmp_path: Path) -> None:
    convs = _run(tmp_path, "muchomusic", "muchomusic_prompts_sample.json",
                 ["data/sdd/audio/00/415600.2min.mp3",
                  "data/musiccaps/audio/[-0Gj8-vB1q4]-[30-40].wav"])
    a, b = convs
    assert a.task == "mcq" and a.choices[a.answer] == "Off-beat syncopation."
    assert b.choices[b.answer] == "Sad and soulful"
    assert b.dimensions == ["mood and expression", "genre and style"]
    assert a.turns[1]["content"] == "(B) Off-beat syncopation."


def test_muchomusic_csv(tmp_path: Path) -> None:
    convs = _run(tmp_path, "muchomusic", "muchomusic_sample.csv",
                 ["sdd/415600.wav", "musiccaps/-0Gj8-vB1q4.wav"])
    assert [c.choices[c.answer] for c in convs] == ["Off-beat syncopation.", "Sad and soulful"]
    assert all(sorted(c.choices) == sorted(set(c.choices)) for c in convs)


def test_missing_audio_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "musiccaps_sample.csv"
    shutil.copy(DATA / "musiccaps_sample.csv", src)
    _wav(tmp_path / "-0Gj8-vB1q4.wav")
    with pytest.raises(DataError, match=r"musiccaps_sample\.csv:3 .*does not exist"):
        convert("musiccaps", src, tmp_path / "o.jsonl")
    n, bad = convert("musiccaps", src, tmp_path / "o.jsonl", skip_bad=True)
    assert (n, bad) == (2, 2)
    errs = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [e["input"].rsplit(":", 1)[1] for e in errs] == ["3", "4"]
    n, bad = convert("musiccaps", src, tmp_path / "o.jsonl", check_audio=False)
    assert (n, bad) == (6, 0)


def test_malformed_json_line_and_missing_fields(tmp_path: Path) -> None:
    src = tmp_path / "lp.jsonl"
    lines = (DATA / "lpmusiccaps_sample.jsonl").read_text().splitlines()
    src.write_text("\n".join([lines[0], '{"ytid": "x", "caption_writing": ', '{"ytid": "y"}',
                              lines[1]]) + "\n")
    with pytest.raises(DataError, match=r"lp\.jsonl:2: malformed JSON"):
        convert("lpmusiccaps", src, tmp_path / "o.jsonl", check_audio=False)
    n, bad = convert("lpmusiccaps", src, tmp_path / "o.jsonl", check_audio=False,
                     skip_bad=True)
    assert (n, bad) == (8, 2)
    errs = (tmp_path / "errors.jsonl").read_text()
    assert "lp.jsonl:3: no caption field" in errs


def test_json_array_reports_element_line(tmp_path: Path) -> None:
    data = json.loads((DATA / "musicqa_sample.json").read_text())
    data[1]["conversation"][1]["from"] = "robot"
    src = tmp_path / "qa.json"
    src.write_text(json.dumps(data, indent=2))
    line = src.read_text().splitlines().index("  {", 2) + 1  # second element's first line
    with pytest.raises(DataError, match=rf"qa\.json:{line}: conversation turn"):
        convert("musicqa", src, tmp_path / "o.jsonl", check_audio=False)


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "llark_sample.json"
    shutil.copy(DATA / "llark_sample.json", src)
    rc = cli(["convert", "--from", "llark", str(src), "--out", str(tmp_path / "c.jsonl"),
              "--no-check-audio"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 3
