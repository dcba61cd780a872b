"""Multiple choice: published formats and their errors, the parser, batched == one at a time,
and the resumable job with its ablation controls, error records and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mullm.config import load_model_config
from mullm.errors import DataError
from mullm.eval.build_mcq import build_mcq_csv
from mullm.eval.mcq_items import detect_format, expand_folds, read_mcq
from mullm.eval.prompts import PROMPTS, option_order, parse_answer
from mullm.eval_job import EvalJobError, EvalOptions, run_eval_job
from mullm.model import MusicLLM
from mullm.train.toydata import make_toy_collection

HEAD = ("question,correct_answer,distractor_1_answer,distractor_2_answer,distractor_3_answer,"
        "dataset,dataset_identifier,genre,music_reasoning,music_knowledge,audio\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_llm_dir: Path) -> tuple[MusicLLM, Path]:
    work = tmp_path_factory.mktemp("mcq")
    meta = make_toy_collection(work / "toy", n=8, duration_s=1.0)
    cfg = load_model_config({"llm": {"name_or_path": str(tiny_llm_dir), "policy": "lora"},
                             "modalities": {"audio": {
                                 "encoder": {"name": "spectral",
                                             "options": {"n_mels": 16, "n_fft": 1024}},
                                 "adapter": {"name": "mlp", "hidden_size": 32,
                                             "pool": "mean", "pool_frames": 5}}}})
    return MusicLLM(cfg).eval(), meta


def test_published_formats_are_read_and_detected(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    mucho = tmp_path / "m.csv"
    mucho.write_text(HEAD + 'Which?,piano,organ,drums,harp,sdd,17.json,Pop,"[\'genre and '
                     'style\']","[\'instrumentation\']",a.wav\n')
    mmau = tmp_path / "mmau.json"
    mmau.write_text(json.dumps([{"id": "q1", "audio_id": "./a.wav", "question": "Which?",
                                 "choices": ["x", "y", "z"], "answer": "y", "task": "music",
                                 "category": "Reasoning", "sub-category": "Genre"}]))
    mmar = tmp_path / "mmar.json"
    mmar.write_text(json.dumps([{"id": "r1", "audio_path": "a.wav", "question": "Q?",
                                 "choices": ["x", "y"], "answer": "x", "modality": "music",
                                 "category": "Semantic Layer", "sub-category": "Emotion"}]))
    rul = tmp_path / "rul.json"
    rul.write_text(json.dumps([{"id": "u1", "audio": "a.wav", "question": "Q?",
                                "answer": "right", "distractors": ["w1", "w2", "w3", "w4"]}]))
    assert [detect_format(p) for p in (mucho, mmau, mmar, rul)] == [
        "muchomusic", "mmau", "mmar", "rulistening"]
    m = read_mcq(mucho)[0]
    assert m.choices[m.answer] == "piano" and m.dimensions == ("instrumentation",
                                                               "genre and style")
    a = read_mcq(mmau)[0]
    assert a.choices[a.answer] == "y" and "Genre" in a.dimensions
    assert read_mcq(mmar)[0].dimensions == ("music", "Semantic Layer", "Emotion")
    folds = expand_folds(read_mcq(rul), 4)
    assert len(folds) == 4 and all(len(f.choices) == 4 and f.choices[f.answer] == "right"
                                   for f in folds)
    assert len({f.choices for f in folds}) == 4  # each fold drops another distractor


@pytest.mark.parametrize("body,match", [
    ("Which?,,organ,drums,harp,sdd,17,Pop,[],[],a.wav\n",
     r"m\.csv:2: missing field.*correct_answer"),
    ("Which?,piano,organ,drums,harp,sdd,17,Pop,[],['x',,a.wav\n",
     r"m\.csv:2: field 'music_knowledge'"),
])
def test_bad_csv_rows_name_file_line_and_field(tmp_path: Path, body: str, match: str) -> None:
    p = tmp_path / "m.csv"
    p.write_text(HEAD + body)
    with pytest.raises(DataError, match=match):
        read_mcq(p)


def test_unscorable_items_are_refused_by_name(tmp_path: Path) -> None:
    p = tmp_path / "mmau.json"
    p.write_text(json.dumps([{"id": "ok", "audio_id": "a.wav", "question": "Q", "choices":
                              ["x", "y"], "answer": "x"},
                             {"id": "lonely", "audio_id": "a.wav", "question": "Q",
                              "choices": ["x"], "answer": "x"}], indent=1))
    with pytest.raises(DataError, match=r"mmau\.json:\d+: item 'lonely' has 1 option"):
        read_mcq(p)
    p.write_text(json.dumps([{"id": "lost", "audio_id": "a.wav", "question": "Q",
                              "choices": ["x", "y"], "answer": "z"}]))
    with pytest.raises(DataError, match="item 'lost': field 'answer' 'z' is not among"):
        read_mcq(p)


def test_parser_reads_letters_then_option_text() -> None:
    opts = ["C major", "A minor", "fast", "slow"]
    assert parse_answer("(B)", opts) == (1, "letter")
    assert parse_answer("The answer is D.", opts) == (3, "letter")
    assert parse_answer("[[C]]", opts) == (2, "letter")
    assert parse_answer("A minor", opts) == (1, "text")  # a word, not the letter A
    assert parse_answer("I think it is fast", opts) == (2, "text")
    assert parse_answer("fast and slow", opts) == (None, "unparsable")
    assert parse_answer("E", opts) == (None, "unparsable")  # no fifth option
    assert option_order("q1", 4, 0) == option_order("q1", 4, 0) != option_order("q1", 4, 1)
    assert "The correct answer is: " in PROMPTS["muchomusic"].render("Q?", ["a", "b"])


def test_cli_refuses_bad_data_before_loading_the_model(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text(HEAD + "Which?,piano,organ,drums\n")
    res = subprocess.run([sys.executable, "-m", "mullm.cli", "eval", "--model",
                          str(tmp_path / "no-such-model"), "--task", "mcq", "--data", str(p),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    assert "m.csv:2" in res.stderr and "no-such-model" not in res.stderr


def _opts(csv: Path, **kw) -> EvalOptions:
    return EvalOptions(task="mcq", data=str(csv), batch_size=8, max_new_tokens=3, **kw)


def test_job_runs_controls_records_errors_and_resumes_exactly_once(
        env: tuple[MusicLLM, Path], tmp_path: Path) -> None:
    model, meta = env
    csv = tmp_path / "mcq.csv"
    n = build_mcq_csv(meta, csv, split=None, max_clips=3)
    rows = csv.read_text().splitlines()
    broken = rows[1].rsplit(",", 1)[0] + ",missing.wav"
    csv.write_text("\n".join([rows[0], broken, *rows[2:]]) + "\n")
    out = tmp_path / "eval"
    summary = run_eval_job(model, _opts(csv), out, progress=False)
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == n == summary["items"] and len({r["id"] for r in recs}) == n
    assert summary["errors"] == 1 and summary["scored"] == n - 1
    assert "missing.wav" in summary["error_items"][0]["error"]
    ok = next(r for r in recs if not r["error"])
    assert set(ok["results"]) == {"audio", "noise", "other", "none"}
    assert set(ok["results"]["audio"]) == {"logprob", "generate"}
    assert ok["other_audio"] and ok["other_audio"] != ok["audio"]
    overall = summary["overall"]
    assert overall["audio"]["logprob"]["n"] == n - 1
    assert 0 <= overall["audio"]["generate"]["instruction_following"] <= 1
    md = (out / "report.md").read_text()
    assert md.splitlines()[0] == summary["verdict"]
    assert "WARNING" in md.splitlines()[0] or "above its noise" in md.splitlines()[0]
    assert "1 error(s) excluded" in md and (out / "dimensions_logprob.png").is_file()
    assert json.loads((out / "report.json").read_text())["settings"]["conditions"]

    # Kill mid-file: keep three records and a torn fourth line; resume writes the rest once.
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:3]
    (out / "records.jsonl").write_text("".join(kept) + lines[3][:20])
    again = run_eval_job(model, _opts(csv), out, progress=False)
    recs2 = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in recs2) == sorted(r["id"] for r in recs)
    assert (out / "records.jsonl").read_text().startswith("".join(kept))
    assert again["overall"] == summary["overall"]  # same answers, same numbers

    with pytest.raises(EvalJobError, match="seed"):
        run_eval_job(model, _opts(csv, seed=1), out, progress=False)


def test_batched_answers_equal_one_at_a_time(env: tuple[MusicLLM, Path], tmp_path: Path
                                             ) -> None:
    from mullm.eval.engine import run_task
    from mullm.eval.mcq import MCQTask

    model, meta = env
    csv = tmp_path / "mcq.csv"
    build_mcq_csv(meta, csv, split=None, max_clips=2)
    items = read_mcq(csv)
    task = MCQTask(model, items, prompt="muchomusic", conditions=("audio", "none"),
                   scorers=("logprob",))
    got = {}
    for bs in (1, 16):
        recs: list[dict] = []
        run_task(task, items, recs.append, batch_size=bs)
        got[bs] = {r["id"]: [c["logprob"]["scores"] for c in r["results"].values()]
                   for r in recs}
    for k in got[1]:
        for a, b in zip(got[1][k], got[16][k]):
            assert a == pytest.approx(b, abs=1e-3)
