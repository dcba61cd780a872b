"""Captioning a collection as users have them: every file gets exactly one record, whatever
its format, name or kind (links, loops, FIFOs, names that are not UTF-8), and the job's
output is checked before the model loads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mullm import caption as C  # noqa: E402
from mullm.audio import synth_clip, write_wav  # noqa: E402
from mullm.caption.job import _RecordSink  # noqa: E402
from mullm.cli import main as cli  # noqa: E402
from mullm.config import ModelConfig, from_dict  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.testing import make_tiny_llm  # noqa: E402
from mullm.testing_audio import mixed_folder, sine, write_encoded  # noqa: E402

LATIN1 = os.fsdecode(b"caf\xe9.wav")


def model_dict(llm_dir: Path) -> dict:
    return {"llm": {"name_or_path": str(llm_dir)},
            "modalities": {"audio": {
                "encoder": {"name": "spectral", "max_duration_s": 10.0},
                "adapter": {"name": "mlp", "hidden_size": 32, "pool": "mean",
                            "pool_frames": 32},
                "injection": {"kind": "splice"}}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("field")
    llm = make_tiny_llm(root / "llm")
    model = MusicLLM(from_dict(ModelConfig, model_dict(llm)))
    return SimpleNamespace(model=model, model_dir=model.save_pretrained(root / "model"))


def records(path: Path) -> list[dict]:
    raw = path.read_bytes()
    raw.decode("utf-8")  # the file is valid UTF-8 whatever the names in it
    return [json.loads(x) for x in raw.splitlines()]


def caption(env: SimpleNamespace, out: Path, *inputs: str | Path, extra: tuple = ()) -> int:
    return cli(["caption", "--model", str(env.model_dir), "--input", *map(str, inputs),
                "--out", str(out), "--max-new-tokens", "2", "--batch-size", "4",
                "--window-s", "10", "--summary", "concat", "--no-progress", *extra])


def test_mixed_folder_gets_exactly_one_record_per_file(env, tmp_path, capsys):
    expect = mixed_folder(tmp_path / "in")
    assert len(expect) == 20
    out = tmp_path / "caps.jsonl"
    assert caption(env, out, tmp_path / "in") == 0
    captured = capsys.readouterr()
    assert "skipped 1 hidden entry" in captured.err
    recs = records(out)
    assert sorted(r["id"] for r in recs) == sorted(expect)  # one each, none twice
    by_id = {r["id"]: r for r in recs}
    for name, problem in expect.items():
        r = by_id[name]
        if problem is None:
            assert r["error"] is None, (name, r["error"])
            assert r["caption"] is not None and r["segments"]
        else:
            assert r["error"] and problem in r["error"], (name, r["error"])
            assert name.split("/")[-1] in r["error"]  # the message names the file
            assert r["caption"] is None and r["segments"] == []
    # True lengths, not libsndfile's estimates (6.68 s and "truncated").
    assert by_id["vbr40.mp3"]["duration_s"] == pytest.approx(40.0, abs=0.1)
    assert by_id["vbr40.mp3"]["segments"][-1]["end_s"] == pytest.approx(40.0, abs=0.1)
    assert by_id["quiet-start.mp3"]["duration_s"] == pytest.approx(25.0, abs=0.1)
    assert by_id["memo.m4a"]["duration_s"] == pytest.approx(3.0, abs=0.07)
    # The Latin-1 name round-trips: same str, the original bytes on disk.
    assert os.fsencode(by_id[LATIN1]["path"]).endswith(b"caf\xe9.wav")
    assert b"caf\\udce9.wav" in out.read_bytes()
    assert "succeeded               11" in captured.out
    assert "failed                  9" in captured.out
    # Resume: nothing is redone, nothing duplicated.
    before = out.read_bytes()
    assert caption(env, out, tmp_path / "in") == 0
    assert "20 of 20 item(s) already done" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_resume_after_a_partial_run_with_odd_names(env, tmp_path, capsys):
    """A killed run (simulated: a record file holding some of the items) resumes to one
    record per item, the odd name included, and shards split odd names stably."""
    src = tmp_path / "in"
    for name in ("a.wav", LATIN1, "b.wav"):
        write_wav(src / name, synth_clip(duration_s=0.5), 16000)
    out = tmp_path / "caps.jsonl"
    assert caption(env, out, src) == 0
    recs = records(out)
    keep = [r for r in recs if r["id"] == LATIN1]
    C.rewrite_records(out, keep)  # as if killed after the first record
    assert caption(env, out, src) == 0
    assert "1 of 3 item(s) already done" in capsys.readouterr().err
    assert sorted(r["id"] for r in records(out)) == sorted(["a.wav", "b.wav", LATIN1])
    assert C.shard_of(LATIN1, 4) == C.shard_of(LATIN1, 4) in range(4)


def test_explicit_files_are_inputs_not_manifests(env, tmp_path):
    write_wav(tmp_path / "good.wav", synth_clip(duration_s=1.0), 16000)
    write_encoded(tmp_path / "memo.m4a", sine(2.0), 44100, container="mp4", codec="aac")
    write_encoded(tmp_path / "raw.aac", sine(2.0), 44100, container="adts", codec="aac")
    write_wav(tmp_path / "take2", synth_clip(duration_s=1.0), 16000)
    out = tmp_path / "caps.jsonl"
    assert caption(env, out, tmp_path / "good.wav", tmp_path / "memo.m4a",
                   tmp_path / "raw.aac", tmp_path / "take2", tmp_path / "missing.ogg") == 0
    recs = {r["id"]: r for r in records(out)}
    assert set(recs) == {"good.wav", "memo.m4a", "raw.aac", "take2", "missing.ogg"}
    assert all(recs[k]["error"] is None for k in ("good.wav", "memo.m4a", "raw.aac", "take2"))
    assert "not found" in recs["missing.ogg"]["error"]


def test_output_folder_of_the_job_is_not_an_input(env, tmp_path):
    write_wav(tmp_path / "in" / "a.wav", synth_clip(duration_s=0.5), 16000)
    out = tmp_path / "in" / "caps.jsonl"
    assert caption(env, out, tmp_path / "in") == 0
    assert caption(env, out, tmp_path / "in") == 0  # caps.jsonl, .meta.json, .lock exist now
    assert [r["id"] for r in records(out)] == ["a.wav"]


def test_manifest_csv_with_a_byte_order_mark(env, tmp_path):
    write_wav(tmp_path / "clips" / "p.wav", synth_clip(duration_s=0.5), 16000)
    (tmp_path / "m.csv").write_bytes("\ufeffaudio,label\r\nclips/p.wav,x\r\n".encode())
    (tmp_path / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"audio": "clips/p.wav"}).encode() + b"\n")
    (tmp_path / "latin1.txt").write_bytes(b"# listed on a Latin-1 system\nclips/caf\xe9.wav\n")
    write_wav(tmp_path / "clips" / LATIN1, synth_clip(duration_s=0.5), 16000)
    for manifest in ("m.csv", "m.jsonl"):
        assert [i.id for i in C.resolve_inputs(str(tmp_path / manifest))] == ["clips/p.wav"]
    items = C.resolve_inputs(str(tmp_path / "latin1.txt"))
    assert [i.id for i in items] == [f"clips/{LATIN1}"] and Path(items[0].path).is_file()


@pytest.mark.parametrize("where", ["under-a-file", "sys"])
def test_unwritable_out_is_one_line_before_the_model_loads(env, tmp_path, capsys, where):
    write_wav(tmp_path / "a.wav", synth_clip(duration_s=0.5), 16000)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "caps.jsonl" if where == "under-a-file" else \
        Path("/sys/mullm-test-caps.jsonl")
    before = sorted(os.listdir(tmp_path))
    # A model that does not exist: had it been loaded first, its error would show.
    rc = cli(["caption", "--model", str(tmp_path / "no-model"), "--input",
              str(tmp_path / "a.wav"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("mullm caption: error: --out ") and str(out) in err
    assert ("is a file, not a folder" in err) if where == "under-a-file" else \
        ("cannot write" in err)
    assert sorted(os.listdir(tmp_path)) == before  # no temporary files left


def test_extract_and_chat_read_names_that_are_not_utf8(env, tmp_path, capsys):
    src = tmp_path / "in"
    write_wav(src / LATIN1, synth_clip(duration_s=1.0), 16000)
    write_encoded(src / "memo.m4a", sine(1.0), 44100, container="mp4", codec="aac")
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "feats"
    rc = cli(["extract", "--config", str(repo / "configs/encoders/spectral.yaml"),
              "--manifest", str(src), "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "2 extracted, 0 already cached, 0 failed" in capsys.readouterr().out
    index = json.loads((out / "index.json").read_text())
    assert sorted(v["id"] for v in index["items"].values()) == sorted([LATIN1, "memo.m4a"])
    wav = str(src / LATIN1)
    assert cli(["chat", "--model", str(env.model_dir), "--audio", wav, "--prompt", "Key?",
                "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.strip() == env.model.chat("Key?", audio=wav,
                                                             max_new_tokens=3)
    assert cli(["extract", "--config", str(repo / "configs/encoders/spectral.yaml"),
                "--manifest", str(src), "--out", "/sys/mullm-test-feats"]) == 2
    assert "mullm extract: error: --out /sys/mullm-test-feats: cannot write" in \
        capsys.readouterr().err


# ------------------------------------------------- failures of any type, fake model


class FlakyModel:
    """Answers from the audio length; raises ``error`` on one length."""

    def __init__(self, fail_len: int, error: BaseException) -> None:
        self.config = from_dict(ModelConfig, {"modalities": {"audio": {"encoder": {
            "name": "spectral", "max_duration_s": 1.0}}}})
        self.encoders = {"audio": SimpleNamespace(sample_rate=16000)}
        self.fail_len, self.error = fail_len, error

    def generate_text(self, conversations, media, generation_config=None,  # noqa: ANN001, ANN201
                      seed=None):
        lengths = [len(m["audio"][0]) for m in media] if media else [0] * len(conversations)
        if self.fail_len in lengths:
            raise self.error
        return [f"len{n}" for n in lengths]


@pytest.mark.parametrize("error", [MemoryError("out of memory"), KeyError("weights"),
                                   RecursionError("deep"), AssertionError("shape"),
                                   UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "bad")])
def test_one_failure_of_any_type_fails_only_its_item(tmp_path, error):
    for i, d in enumerate((0.5, 0.25, 0.75)):
        write_wav(tmp_path / f"t{i}.wav", synth_clip(duration_s=d), 16000)
    recs = {r["id"]: r for r in C.caption_files(FlakyModel(4000, error), [str(tmp_path)],
                                                batch_size=3)}
    assert recs["t0.wav"]["error"] is None and recs["t2.wav"]["error"] is None
    assert type(error).__name__ in recs["t1.wav"]["error"]


def test_a_record_json_cannot_hold_becomes_an_error_record(tmp_path):
    out = tmp_path / "caps.jsonl"
    stats = C.CaptionStats()
    rec = {"id": "x.wav", "path": "/x.wav", "caption": "c", "error": None,
           "segments": [{"start_s": 0.0, "end_s": float("nan"), "caption": "c"}],
           "duration_s": float("nan"), "model": "m", "prompt": "p",
           "generation": {"warnings": []}}
    with C.RecordWriter(out) as writer:
        _RecordSink(writer, stats, None)(rec)
    (r,) = records(out)
    assert r["id"] == "x.wav" and r["caption"] is None and r["segments"] == []
    assert "could not be written as JSON" in r["error"]
    assert stats.failed == 1 and stats.succeeded == 0



def test_folder_links_are_followed_once_and_loops_end(tmp_path):
    root = tmp_path / "music"
    write_wav(root / "albums" / "a" / "1.wav", synth_clip(duration_s=0.3), 16000)
    elsewhere = tmp_path / "elsewhere"
    write_wav(elsewhere / "2.wav", synth_clip(duration_s=0.3), 16000)
    (root / "linked").symlink_to(elsewhere)  # a link to a folder outside: followed
    (root / "albums" / "a" / "up").symlink_to("../..")  # a link back up: not a loop forever
    (root / "again").symlink_to("albums")  # the same real folder twice: read once
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    notes: list[str] = []
    ids = [i.id for i in C.resolve_inputs(str(root), notes)]
    assert ids == ["albums/a/1.wav", "linked/2.wav"]
    assert notes == [f"{root}: skipped 1 hidden entry (names starting with '.'); list them "
                     "explicitly to include them"]


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def test_an_exception_whose_message_fails_is_still_a_record(tmp_path):
    for i, d in enumerate((0.5, 0.25)):
        write_wav(tmp_path / f"t{i}.wav", synth_clip(duration_s=d), 16000)
    recs = {r["id"]: r for r in C.caption_files(FlakyModel(4000, Unprintable()),
                                                [str(tmp_path)], batch_size=2)}
    assert recs["t0.wav"]["error"] is None
    assert "Unprintable (its message could not be read)" in recs["t1.wav"]["error"]
