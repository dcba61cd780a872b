"""Learning benchmark: what does the offline default learn about music, and what could it?

1. Linear probe: logistic regression on mean- and std-pooled spectral features of each clip
   (train split -> test split), per attribute. This bounds what the features carry at all.
2. The model: train the quickstart recipe (longer, by default) on the corpus, then ask closed
   questions about held-out clips, next to (a) the same model with every clip replaced by
   noise of the same RMS loudness and (b) chance, uniform and majority-class.

    python benchmarks/learning.py                 # probe + train + evaluate (~30-60 min CPU)
    python benchmarks/learning.py --probe-only    # the probe alone (~3 min incl. rendering)

Prints a table and writes benchmarks/results/learning.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def label_of(row: dict, attr: str) -> str | None:
    """The closed-question answer of ``row`` for ``attr`` (None when it has none)."""
    from mullm.data.templates import closed_questions

    for q in closed_questions(row):
        if q["attribute"] == attr:
            return q["answer"]
    return None


def clip_features(rows: list[dict], meta_dir: Path, sample_rate: int = 16000) -> np.ndarray:
    """(clips, 2 D) mean and std over time of the spectral encoder's frames."""
    from mullm.audio import load_audio
    from mullm.config import EncoderConfig
    from mullm.encoders import build_encoder

    enc = build_encoder(EncoderConfig(name="spectral", sample_rate=sample_rate, frame_rate=25))
    feats = []
    with torch.no_grad():
        for r in rows:
            wave = torch.from_numpy(load_audio(meta_dir / r["audio"], sample_rate))
            out = enc(wave[None], torch.tensor([wave.shape[0]]))
            h = out.hidden_states[0, 0][out.mask[0]]
            feats.append(torch.cat([h.mean(0), h.std(0)]).numpy())
    return np.stack(feats)


def logistic_probe(x_tr: np.ndarray, y_tr: list[str], x_te: np.ndarray, y_te: list[str],
                   l2: float = 1e-3, epochs: int = 300) -> float:
    """Multinomial logistic regression (full-batch LBFGS); test accuracy."""
    classes = sorted(set(y_tr) | set(y_te))
    idx = {c: i for i, c in enumerate(classes)}
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.tensor((x_tr - mu) / sd, dtype=torch.float32)
    xe = torch.tensor((x_te - mu) / sd, dtype=torch.float32)
    yt = torch.tensor([idx[c] for c in y_tr])
    ye = torch.tensor([idx[c] for c in y_te])
    torch.manual_seed(0)
    lin = torch.nn.Linear(xt.shape[1], len(classes))
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=epochs)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(xe).argmax(1) == ye).float().mean())


def run_probe(meta: Path, attributes: list[str]) -> dict:
    """Probe accuracy per attribute on the test split (valid added when test is small)."""
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
    t0 = time.perf_counter()
    feats = clip_features(rows, meta.parent)
    out = {}
    for attr in attributes:
        lab = [label_of(r, attr) for r in rows]
        tr = [i for i, r in enumerate(rows) if r["split"] == "train" and lab[i] is not None]
        te = [i for i, r in enumerate(rows) if r["split"] in ("test", "valid")
              and lab[i] is not None]
        if len(tr) < 5 or len(te) < 2:
            continue
        y_tr, y_te = [lab[i] for i in tr], [lab[i] for i in te]
        counts = Counter(y_te)
        n_choices = {"family": 11, "mode": 2, "tempo_class": 3, "metre": 2, "key": 24}[attr]
        out[attr] = {"n_train": len(tr), "n_test": len(te),
                     "probe_accuracy": logistic_probe(feats[tr], y_tr, feats[te], y_te),
                     "chance_uniform": 1.0 / n_choices,
                     "majority_rate": counts.most_common(1)[0][1] / len(te),
                     "train_majority_rate": sum(y == Counter(y_tr).most_common(1)[0][0]
                                                for y in y_te) / len(te)}
    return {"attributes": out, "seconds": time.perf_counter() - t0,
            "features": "spectral (136-dim: log-mel, chroma, onset, tempogram, key profiles, "
                        "mode strength) mean+std over time"}


def main() -> int:
    """Build the corpus, probe, optionally train and evaluate; print and save results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=600)
    ap.add_argument("--min-s", type=float, default=5.0)
    ap.add_argument("--max-s", type=float, default=8.0)
    ap.add_argument("--corpus", default=None, help="corpus folder (default: cache)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "learning"))
    ap.add_argument("--probe-only", action="store_true")
    ap.add_argument("--eval-clips", type=int, default=60)
    ap.add_argument("--single-family", type=float, default=0.6,
                    help="fraction of single-family procedural clips (family questions need "
                         "them; the corpus default is 0.3)")
    ap.add_argument("--steps", type=int, default=300,
                    help="adapter+LoRA steps after the 20 adapter-only ones")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "learning.json"))
    ap.add_argument("overrides", nargs="*", help="training overrides for the model run, e.g. "
                    "stages.joint.steps=600")
    args = ap.parse_args()
    from mullm.data.corpus import build_corpus
    from mullm.eval.closed import ATTRIBUTES
    from mullm.llm import cache_root

    corpus = Path(args.corpus) if args.corpus else cache_root() / "bench" / (
        f"corpus-{args.clips}-{args.min_s:g}-{args.max_s:g}-sf{args.single_family:g}")
    t0 = time.perf_counter()
    meta = build_corpus(corpus, args.clips, seed=0, min_s=args.min_s, max_s=args.max_s,
                        music21_fraction=0.0, single_family_fraction=args.single_family,
                        progress=True)
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                               f"{torch.get_num_threads()} threads",
                    "corpus": {"clips": args.clips, "min_s": args.min_s, "max_s": args.max_s,
                               "single_family_fraction": args.single_family,
                               "render_s": time.perf_counter() - t0}}
    result["probe"] = run_probe(meta, list(ATTRIBUTES))
    print("\nLinear probe on spectral features (train -> valid+test clips):")
    print(f"{'attribute':<12} {'n':>4} {'probe':>6} {'uniform':>8} {'majority':>9}")
    for a, e in result["probe"]["attributes"].items():
        print(f"{a:<12} {e['n_test']:>4} {e['probe_accuracy']:>6.2f} "
              f"{e['chance_uniform']:>8.2f} {e['majority_rate']:>9.2f}")
    if not args.probe_only:
        from mullm.eval.closed import closed_items, evaluate_closed, format_table
        from mullm.model import MusicLLM
        from mullm.quickstart import CONFIG, prepare_data
        from mullm.train.config import load_train_config
        from mullm.train.trainer import train

        out = Path(args.out)
        paths = prepare_data(meta, out / "data", per_clip=2)
        ov = [f"data.train.closed.path={paths['closed_train']}",
              f"data.train.captions.path={paths['other_train']}",
              f"data.eval.closed.path={paths['closed_valid']}", f"output_dir={out / 'run'}",
              f"stages.joint.steps={args.steps}", *args.overrides]
        cfg = load_train_config(CONFIG, ov)
        t1 = time.perf_counter()
        model_dir = train(cfg, overwrite=True)
        train_s = time.perf_counter() - t1
        model = MusicLLM.load(model_dir)
        items = closed_items(meta, split="test", max_clips=args.eval_clips)
        closed = evaluate_closed(model, items, noise_control=True, progress=True)
        print("\nThe trained model, closed questions on held-out (test) clips:")
        print(format_table(closed))
        result["model"] = {"config": str(CONFIG), "overrides": ov, "train_s": train_s,
                           "eval_s": closed["seconds"], "closed": closed["attributes"]}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
