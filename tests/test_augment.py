"""Template and LLM augmentation, closed questions, audio augmentation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mullm.data.llm_augment import BANNED_PHRASES, InvalidOutput, llm_conversations, parse_reply
from mullm.data.schema import read_conversations, write_conversations
from mullm.data.templates import (
    FAMILY_CHOICES,
    KEY_CHOICES,
    closed_questions,
    instrument_phrase,
    pack_by_clip,
    template_conversations,
)


def _row(i: int, **kw) -> dict:
    base = {"id": f"clip{i:05d}", "audio": f"audio/clip{i:05d}.wav", "key": "F#",
            "mode": "minor", "tempo_bpm": 140.0 - 10 * i, "tempo_class": "fast",
            "time_signature": "3/4", "metre": "triple",
            "instruments": ["Drum Kit", "Electric Bass (pick)", "Violin"],
            "families": ["bass", "drums", "strings"], "style": "waltz", "source": "procedural",
            "piece": f"procedural/0/{i:05d}", "duration_s": 10.0, "split": "train"}
    base.update(kw)
    from mullm.utils.music import tempo_class

    base["tempo_class"] = tempo_class(base["tempo_bpm"])
    return base


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, list[dict]]:
    rows = [_row(i) for i in range(6)]
    rows[1].update(families=["strings"], instruments=["Cello", "Violin"])
    rows[2].update(split="test", mode="major", key="Db", time_signature="5/4", metre="other")
    rows[3].update(split="test")
    d = tmp_path / "corpus"
    (d / "audio").mkdir(parents=True)
    for r in rows:
        sf.write(d / r["audio"], np.zeros(800, dtype=np.float32), 16000)
    (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, rows


def test_closed_questions() -> None:
    qs = {q["attribute"]: q for q in closed_questions(_row(0))}
    assert set(qs) == {"mode", "tempo_class", "metre", "key"}  # several families: no family q
    assert qs["key"]["answer"] == "F# minor" and qs["key"]["choices"] == KEY_CHOICES
    assert qs["mode"]["answer"] == "minor" and qs["metre"]["answer"] == "triple"
    assert qs["tempo_class"]["answer"] == "fast"
    for q in qs.values():
        assert q["answer"] in q["choices"] and len(q["answer"].split()) <= 2
    single = closed_questions(_row(1, families=["strings"], key="Gb", mode="major",
                                   time_signature="5/4", metre="other"))
    got = {q["attribute"]: q["answer"] for q in single}
    assert got["family"] == "strings" and got["key"] == "F# major"  # enharmonic respelled
    assert "metre" not in got  # 5/4 is neither duple nor triple
    assert [q["question"] for q in single] == [q["question"] for q in closed_questions(
        _row(4, families=["brass"], time_signature="5/4", metre="other"))]  # fixed phrasing
    assert set(FAMILY_CHOICES) >= {"strings", "brass", "piano"}


def test_pack_by_clip_keeps_every_answer_once(corpus: tuple[Path, list[dict]],
                                              tmp_path: Path) -> None:
    """Packing (with no pair kept apart) gives one conversation per clip holding each of its
    closed Q/A pairs once, the audio marker only in the first question, and a seeded order;
    it round-trips."""
    d, rows = corpus
    convs = [c for c in template_conversations(rows, meta_dir=d, out_dir=tmp_path, per_clip=0)
             if c.meta["template"] == "closed"]
    packed = pack_by_clip(convs, seed=3, apart=())
    assert len(packed) == len(rows)
    for p in packed:
        singles = [c for c in convs if c.audio == p.audio]
        pairs = sorted((u["content"].split("\n")[-1], a["content"])
                       for u, a in zip(p.turns[::2], p.turns[1::2]))
        assert pairs == sorted((c.turns[0]["content"].split("\n")[-1], c.turns[1]["content"])
                               for c in singles)
        markers = [t["content"].count("<audio>") for t in p.turns if t["role"] == "user"]
        assert markers[0] == 1 and sum(markers) == 1 and p.split == singles[0].split
        assert sorted(p.meta["packed"]) == sorted(c.id for c in singles)
    orders = {tuple(p.meta["packed"]) for p in pack_by_clip(convs, seed=4, apart=())}
    assert [tuple(p.meta["packed"]) for p in pack_by_clip(convs, seed=3, apart=())] == \
        [tuple(p.meta["packed"]) for p in packed]
    assert orders != {tuple(p.meta["packed"]) for p in packed}
    write_conversations(tmp_path / "packed.jsonl", packed)
    back = read_conversations(tmp_path / "packed.jsonl")
    assert [b.turns for b in back] == [p.turns for p in packed]
    with pytest.raises(ValueError, match="single-question"):
        pack_by_clip(packed)


def test_pack_by_clip_keeps_revealing_questions_apart(corpus: tuple[Path, list[dict]],
                                                       tmp_path: Path) -> None:
    """By default a key question ("A minor") never shares a conversation with the mode
    question it answers; every Q/A pair is still kept exactly once per clip."""
    d, rows = corpus
    convs = [c for c in template_conversations(rows, meta_dir=d, out_dir=tmp_path, per_clip=0)
             if c.meta["template"] == "closed"]
    packed = pack_by_clip(convs, seed=1)
    attrs = {c.id: c.meta["attribute"] for c in convs}
    both = 0
    for row in rows:
        mine = [p for p in packed if p.meta["clip"] == row["id"]]
        kept = sorted(i for p in mine for i in p.meta["packed"])
        assert kept == sorted(c.id for c in convs if c.meta["clip"] == row["id"])
        for p in mine:
            assert not {"key", "mode"} <= {attrs[i] for i in p.meta["packed"]}, p.meta
            assert p.turns[0]["content"].startswith("<audio>")
        has = {attrs[i] for i in kept}
        if {"key", "mode"} <= has:
            both += 1
            assert len(mine) == 2 and len({p.id for p in mine}) == 2
        else:
            assert len(mine) == 1
    assert both > 0  # the corpus exercises the split


def test_instrument_phrase() -> None:
    assert instrument_phrase("Electric Bass (pick)") == "picked electric bass"
    assert instrument_phrase("Lead 2 (sawtooth)") == "sawtooth synth lead"
    assert instrument_phrase("Drum Kit") == "drums"
    assert instrument_phrase("String Ensemble 1") == "string ensemble"


def test_templates_valid_and_varied(corpus: tuple[Path, list[dict]], tmp_path: Path) -> None:
    d, rows = corpus
    out = tmp_path / "aug" / "conv.jsonl"
    convs = template_conversations(rows, meta_dir=d, out_dir=out.parent, per_clip=12, seed=0)
    write_conversations(out, convs)
    back = read_conversations(out)  # schema-valid, audio resolves from the output folder
    assert len(back) == len(convs)
    tasks = Counter(c.task for c in back)
    assert set(tasks) >= {"caption", "qa", "mcq", "mir", "chat"}
    templates = Counter(c.meta["template"] for c in back)
    assert set(templates) >= {"caption", "open_qa", "yes_no", "mcq", "count", "compare",
                              "mir", "reasoning", "dialogue", "closed"}
    questions = {c.turns[0]["content"] for c in back if c.meta["template"] == "open_qa"}
    assert len(questions) >= 6  # several phrasings
    for c in back:
        text = " ".join(t["content"] for t in c.turns).lower()
        assert not any(p in text for p in ("metadata", "the label", "tags"))
        row = next(r for r in rows if r["id"] == c.meta["clip"])
        assert c.split == row["split"]
        if c.meta["template"] == "compare":
            assert len(c.audio) == 2 and c.turns[0]["content"].count("<audio>") == 2
            other = next(r for r in rows if r["id"] == c.meta["other"])
            assert other["split"] == row["split"]  # comparisons never cross splits
            faster = "first" if row["tempo_bpm"] > other["tempo_bpm"] else "second"
            assert faster in c.turns[1]["content"]
        if c.task == "mcq":
            assert c.turns[1]["content"].endswith(c.choices[c.answer])
        if c.meta["template"] == "count":
            assert c.meta["count"] == len(row["instruments"])
    # same seed, same data
    again = template_conversations(rows, meta_dir=d, out_dir=out.parent, per_clip=12, seed=0)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in convs]


def test_captions_state_true_labels(corpus: tuple[Path, list[dict]], tmp_path: Path) -> None:
    d, rows = corpus
    convs = template_conversations(rows, meta_dir=d, out_dir=tmp_path, per_clip=20, seed=1)
    for c in convs:
        if c.task == "caption":
            row = next(r for r in rows if r["id"] == c.meta["clip"])
            key = "F# minor" if row["key"] == "F#" else "C# major"  # Db respelled
            assert key in c.turns[1]["content"]


# ---- LLM mode -------------------------------------------------------------------------------

GOOD = json.dumps({"caption": "A brisk waltz in F# minor where a violin sings over bass and "
                              "drums.",
                   "qa": [{"question": "What is the metre?", "answer": "It is in 3/4."},
                          {"question": "Which key?", "answer": "F# minor."}]})


class FakeLLM:
    """Returns scripted replies in order, cycling; records the prompts."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.calls = replies, []

    def __call__(self, messages: list[dict]) -> str:
        self.calls.append(messages)
        r = self.replies[(len(self.calls) - 1) % len(self.replies)]
        if r == "RAISE":
            raise ConnectionError("endpoint down")
        return r


def test_parse_reply_rules() -> None:
    row = _row(0)
    assert parse_reply("Sure! ```json\n" + GOOD + "\n```", row)["qa"][1]["answer"] == "F# minor."
    bad = [
        ("not json at all", "no JSON object"),
        ('{"caption": "x"}', r"\$: 'qa' is a required property"),
        (json.dumps({"caption": "According to the metadata, this is a waltz in F# minor.",
                     "qa": [{"question": "Which key?", "answer": "F# minor"}]}), "banned phrase"),
        (json.dumps({"caption": "A waltz in G major with violin, bass and drums playing.",
                     "qa": [{"question": "Which key?", "answer": "G major"}]}), "contradicts"),
        (json.dumps({"caption": "A lively waltz with violin, bass and drums.", "qa": [],
                     }), r"\$\.qa: \[\] should be non-empty"),
        (json.dumps({"caption": "A lively waltz with violin, bass and drums.",
                     "qa": [{"question": "Which key?", "answer": "F# minor", "x": 1}]}),
         r"\$\.qa\[0\]: .*'x' was unexpected"),
        (json.dumps({"caption": " " * 30, "qa": [{"question": "Which key?", "answer": "F"}]}),
         r"\$\.caption: .* does not match"),  # blank is empty, whatever its length
    ]
    for text, msg in bad:
        with pytest.raises(InvalidOutput, match=msg):
            parse_reply(text, row)
    # "a minor key" is not read as "A minor"
    ok = json.loads(GOOD)
    ok["caption"] = "A brisk waltz in a minor key, with violin, bass and drums."
    parse_reply(json.dumps(ok), row)
    assert "metadata" in BANNED_PHRASES


def test_llm_conversations_retries_and_records(corpus: tuple[Path, list[dict]],
                                               tmp_path: Path) -> None:
    d, rows = corpus
    rows = rows[:3]
    rows[2] = dict(rows[2], key="F#", mode="minor")
    # clip 0: invalid then valid; clip 1: always invalid (3 tries); clip 2: raise then valid
    fake = FakeLLM(["{broken", GOOD, "metadata!", "{}", "[1]", "RAISE", GOOD])
    errors = tmp_path / "errors.jsonl"
    convs, stats = llm_conversations(rows, fake, model_name="fake-llm", meta_dir=d,
                                     out_dir=tmp_path, max_retries=2, errors_path=errors)
    assert (stats.items, stats.ok, stats.failed) == (3, 2, 1)
    assert stats.attempts == 7 and stats.invalid_replies == 4
    assert len(fake.calls) == 7
    assert {c.meta["clip"] for c in convs} == {rows[0]["id"], rows[2]["id"]}
    assert all(c.meta["model"] == "fake-llm" for c in convs)
    assert Counter(c.task for c in convs) == {"caption": 2, "qa": 4}
    err = json.loads(errors.read_text())
    assert err["input"] == rows[1]["id"] and err["model"] == "fake-llm"
    assert err["error"].count("invalid reply") == 3
    write_conversations(tmp_path / "llm.jsonl", convs)
    assert len(read_conversations(tmp_path / "llm.jsonl")) == 6
    facts = fake.calls[0][1]["content"]
    assert "F# minor" in facts and "140 BPM" in facts


def test_tiny_transformers_llm_never_crashes(corpus: tuple[Path, list[dict]],
                                             tmp_path: Path) -> None:
    import tokenizers
    import torch
    import transformers

    from mullm.data.llm_augment import transformers_generator

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "{", "}", '"caption"', ":", "a"])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                                  eos_token="<eos>")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=2, eos_token_id=1)
    model = transformers.LlamaForCausalLM(cfg)
    gen = transformers_generator(model, hf_tok, max_new_tokens=8)
    d, rows = corpus
    convs, stats = llm_conversations(rows[:1], gen, model_name="tiny-random", meta_dir=d,
                                     out_dir=tmp_path, max_retries=1,
                                     errors_path=tmp_path / "e.jsonl")
    assert convs == [] and stats.failed == 1 and stats.attempts == 2
    assert json.loads((tmp_path / "e.jsonl").read_text())["model"] == "tiny-random"


def test_cli_augment_templates(corpus: tuple[Path, list[dict]], tmp_path: Path,
                               capsys: pytest.CaptureFixture) -> None:
    from mullm.cli import main

    d, rows = corpus
    out = tmp_path / "o" / "train.jsonl"
    assert main(["augment", "--metadata", str(d / "metadata.jsonl"), "--out", str(out),
                 "--per-clip", "3", "--seed", "2"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    convs = read_conversations(out)
    assert res["conversations"] == len(convs) and res["clips"] == 6
    n_closed = sum(len(closed_questions(r)) for r in rows)
    assert len(convs) == 6 * 3 + n_closed


def test_openai_generator_against_local_server(corpus: tuple[Path, list[dict]],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mullm.cli import main

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"auth": self.headers.get("Authorization"), **body})
            reply = json.dumps({"choices": [{"message": {"content": GOOD}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("FAKE_KEY", "sk-test")
        d, rows = corpus
        rows_meta = d / "metadata.jsonl"
        # one clip only: every clip of the fixture is F# minor except clip 2
        rows_meta.write_text(json.dumps(rows[0]) + "\n")
        out = tmp_path / "llm" / "c.jsonl"
        rc = main(["augment", "--metadata", str(rows_meta), "--out", str(out), "--mode", "llm",
                   "--llm-base-url", f"http://127.0.0.1:{srv.server_port}/v1",
                   "--llm-model", "served-model", "--llm-api-key-env", "FAKE_KEY"])
    finally:
        srv.shutdown()
    assert rc == 0
    assert seen[0]["model"] == "served-model" and seen[0]["auth"] == "Bearer sk-test"
    convs = read_conversations(out)
    assert len(convs) == 3 and all(c.meta["model"] == "served-model" for c in convs)
