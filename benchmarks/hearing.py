"""Why does the offline default not hear? The diagnostic ladder of issue 14, rung by rung.

Every rung runs on the cached features of the ``offline`` corpus (``mullm.data.corpora``),
trains on its train split and scores the valid + test clips (unseen pieces), so each rung's
number can be held against the one before it:

    a  probes: logistic regression and a small MLP on each clip's mean + std of the frames
       (the ceiling of what the features carry);
    b  the adapter alone (pooling, MLP, output norm: the model's own modules) with a
       classification head and no LLM, with raw inputs and with standardised inputs;
    c  the LLM frozen, the adapter trained alone on one attribute's closed question: accuracy
       next to the noise control, the gradient norm reaching the adapter, and how far the
       answer's log-probability moves when the clip is replaced by noise; raw vs standardised.

    python benchmarks/hearing.py --rung a b        # minutes
    python benchmarks/hearing.py --rung c --attributes mode --steps 120

Prints a table per rung and writes benchmarks/results/hearing.json (merged across runs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ATTRS = ("family", "mode", "tempo_class", "metre", "key")
RESULTS = ROOT / "benchmarks" / "results" / "hearing.json"


def labels_of(row: dict) -> dict[str, str]:
    """{attribute: closed-question answer} of a metadata row."""
    from mullm.data.templates import closed_questions

    return {q["attribute"]: q["answer"] for q in closed_questions(row)}


def load_corpus(name: str, encoder: str, n: int | None = None
                ) -> tuple[list[dict], dict[str, torch.Tensor], Any]:
    """Rows, {clip id: (T, D) frames} and the encoder config of a shipped corpus (its first
    ``n`` clips when given)."""
    from mullm.commands.extract import encoder_config_from_file
    from mullm.data.corpora import ensure_corpus
    from mullm.data.corpus_features import clip_frames, ensure_features

    meta = ensure_corpus(name, n)
    cfg = encoder_config_from_file(f"encoders/{encoder}")
    cache = ensure_features(meta, cfg)
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
    return rows, clip_frames(meta, cache), cfg


def split_ids(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows = valid + test)."""
    return ([r for r in rows if r["split"] == "train"],
            [r for r in rows if r["split"] in ("valid", "test")])


# ---------------------------------------------------------------------------------- rung a


def rung_a(rows: list[dict], frames: dict[str, torch.Tensor]) -> dict:
    """Linear and MLP probe per attribute (train -> held-out clips)."""
    from mullm.eval.probe import clip_statistics, linear_probe, mlp_probe

    train, held = split_ids(rows)
    stats = {r["id"]: clip_statistics(frames[r["id"]]).numpy() for r in rows}
    out = {}
    for attr in ATTRS:
        tr = [(stats[r["id"]], labels_of(r)[attr]) for r in train if attr in labels_of(r)]
        te = [(stats[r["id"]], labels_of(r)[attr]) for r in held if attr in labels_of(r)]
        x_tr, y_tr = np.stack([x for x, _ in tr]), [y for _, y in tr]
        x_te, y_te = np.stack([x for x, _ in te]), [y for _, y in te]
        counts = {c: y_te.count(c) for c in set(y_te)}
        out[attr] = {"n_train": len(tr), "n_test": len(te),
                     "min_train_per_answer": min(y_tr.count(c) for c in set(y_tr)),
                     "linear": linear_probe(x_tr, y_tr, x_te, y_te),
                     "mlp": mlp_probe(x_tr, y_tr, x_te, y_te),
                     "majority": max(counts.values()) / len(te)}
    print("\nrung a: probes on clip mean + std (train -> valid+test clips)")
    print(f"{'attribute':<12} {'train':>6} {'min/ans':>8} {'test':>5} {'linear':>7} {'mlp':>6} "
          f"{'majority':>9}")
    for a, e in out.items():
        print(f"{a:<12} {e['n_train']:>6} {e['min_train_per_answer']:>8} {e['n_test']:>5} "
              f"{e['linear']:>7.2f} {e['mlp']:>6.2f} {e['majority']:>9.2f}")
    return out


# ---------------------------------------------------------------------------------- rung b


def _padded(ids: list[str], frames: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    from mullm.media import pad_stack

    x, lengths = pad_stack([frames[i] for i in ids])
    return x, torch.arange(x.shape[1])[None] < lengths[:, None]


def _fit_norm(norm: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> None:
    valid = x[mask].double()
    norm.fit(valid.sum(0), valid.pow(2).sum(0), valid.shape[0])


def text_rms() -> float:
    """RMS of the offline LLM's text embeddings (the output norm's initial gain)."""
    from mullm.config import LLMConfig, compose, from_dict, read_config
    from mullm.llm import load_base_llm

    data, file = read_config("llms/smollm2-135m-instruct")
    llm = load_base_llm(from_dict(LLMConfig, compose(data, file), prefix="llm"))
    return float(llm.get_input_embeddings().weight.float().pow(2).mean().sqrt())


class _Classifier(torch.nn.Module):
    """Adapter -> output norm -> mean over tokens -> one linear head per attribute."""

    def __init__(self, adapter: torch.nn.Module, norm: torch.nn.Module,
                 heads: torch.nn.ModuleDict) -> None:
        super().__init__()
        self.adapter, self.norm, self.heads = adapter, norm, heads

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute for (B, T, D) frames with mask (B, T)."""
        tok, tm = self.adapter(x, m)
        tok = self.norm(tok) * tm[..., None]
        pooled = tok.sum(1) / tm.sum(1, keepdim=True)
        return {a: h(pooled) for a, h in self.heads.items()}


def rung_b(rows: list[dict], frames: dict[str, torch.Tensor], enc_cfg: Any, steps: int,
           lr: float, batch: int = 16) -> dict:
    """The model's adapter + output norm + a linear head per attribute, no LLM."""
    from mullm.adapters import build_adapter
    from mullm.config import AdapterConfig, compose, from_dict, read_config

    data, file = read_config("adapters/pooled-mlp")
    base = compose(data, file)
    train, held = split_ids(rows)
    x_tr, m_tr = _padded([r["id"] for r in train], frames)
    x_te, m_te = _padded([r["id"] for r in held], frames)
    classes = {a: sorted({labels_of(r)[a] for r in rows if a in labels_of(r)}) for a in ATTRS}

    def targets(rs: list[dict]) -> dict[str, torch.Tensor]:
        return {a: torch.tensor([classes[a].index(labels_of(r)[a]) if a in labels_of(r)
                                 else -100 for r in rs]) for a in ATTRS}

    y_tr, y_te = targets(train), targets(held)
    gain = text_rms()
    variants = {"raw frames (recipe)": ("none", True),
                "standardised frames": ("standardize", True),
                "standardised, no output norm": ("standardize", False)}
    out = {}
    for name, (input_norm, output_norm) in variants.items():
        torch.manual_seed(0)
        cfg = from_dict(AdapterConfig, {**base, "input_norm": input_norm}, prefix="adapter")
        adapter = build_adapter(cfg, x_tr.shape[-1], 576, float(enc_cfg.frame_rate))
        if adapter.input_norm is not None:
            _fit_norm(adapter.input_norm, x_tr, m_tr)
        norm = torch.nn.LayerNorm(576) if output_norm else torch.nn.Identity()
        if output_norm:
            with torch.no_grad():
                norm.weight.fill_(gain)
        heads = torch.nn.ModuleDict({a: torch.nn.Linear(576, len(classes[a])) for a in ATTRS})
        logits = _Classifier(adapter, norm, heads)
        opt = torch.optim.AdamW(logits.parameters(), lr=lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(0)

        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(len(train), (batch,), generator=g)
            out_l = logits(x_tr[idx], m_tr[idx])
            loss = sum(torch.nn.functional.cross_entropy(out_l[a], y_tr[a][idx],
                                                         ignore_index=-100)
                       for a in ATTRS if bool((y_tr[a][idx] >= 0).any()))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = logits(x_te, m_te)
        res = {}
        for a in ATTRS:
            keep = y_te[a] >= 0
            res[a] = float((pred[a].argmax(1)[keep] == y_te[a][keep]).float().mean())
        out[name] = {"accuracy": res, "seconds": time.perf_counter() - t0}
    print(f"\nrung b: adapter + output norm + linear heads, no LLM ({steps} steps, batch "
          f"{batch}, lr {lr:g})")
    print(f"{'variant':<30} " + " ".join(f"{a:>11}" for a in ATTRS))
    for name, e in out.items():
        print(f"{name:<30} " + " ".join(f"{e['accuracy'][a]:>11.2f}" for a in ATTRS))
    return {"steps": steps, "lr": lr, "batch": batch, "variants": out}


# ---------------------------------------------------------------------------------- rung c


def _noise_features(rows: list[dict], meta_dir: Path, enc_cfg: Any) -> dict[str, torch.Tensor]:
    """Frames of Gaussian noise with each clip's loudness and length (the noise control)."""
    from mullm.audio import load_audio
    from mullm.encoders import build_encoder
    from mullm.eval.closed import noise_like

    enc = build_encoder(enc_cfg)
    out = {}
    with torch.no_grad():
        for k, r in enumerate(rows):
            wave = torch.from_numpy(load_audio(meta_dir / r["audio"], enc.sample_rate))
            noise = noise_like(wave, k)
            h = enc(noise[None], torch.tensor([noise.shape[0]]))
            out[r["id"]] = h.hidden_states[0, -1, : int(h.mask[0].sum())]
    return out


def rung_c(rows: list[dict], frames: dict[str, torch.Tensor], enc_cfg: Any,
           attributes: list[str], steps: int, lr: float, batch: int, n_eval: int,
           variants: list[str], meta_dir: Path) -> dict:
    """Frozen LLM, adapter alone, one attribute at a time, closed question and answer."""
    from mullm.data.templates import CLOSED_PHRASING, closed_questions
    from mullm.eval.closed import score_choices
    from mullm.media import Features
    from mullm.model import MusicLLM
    from mullm.train.config import load_train_config

    train, held = split_ids(rows)
    held = held[:n_eval]
    noise = _noise_features(held, meta_dir, enc_cfg)
    out: dict = {}
    for attr in attributes:
        tr = [r for r in train if attr in labels_of(r)]
        te = [r for r in held if attr in labels_of(r)]
        choices = next(q["choices"] for q in closed_questions(te[0]) if q["attribute"] == attr)
        for variant in variants:
            cfg = load_train_config("quickstart", [
                f"model.modalities.audio.adapter.input_norm={variant}"])
            model = MusicLLM(cfg.model)
            model.requires_grad_(False)
            params = model.trainable_groups()["adapter.audio"]
            for p in params:
                p.requires_grad_(True)
            norm = model.adapters["audio"].input_norm
            if norm is not None:
                x, m = _padded([r["id"] for r in tr], frames)
                _fit_norm(norm, x, m)
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min(1.0, (s + 1) / 10) * (0.1 + 0.9 * 0.5 * (
                    1 + math.cos(math.pi * min(1.0, s / steps)))))
            g = torch.Generator().manual_seed(0)
            grad_norms, losses = [], []
            t0 = time.perf_counter()
            model.train()
            for k in range(steps):
                if k % 20 == 0:
                    print(f"  [{attr}, {variant}] step {k}/{steps} {time.perf_counter() - t0:.0f} s"
                          + (f" loss {np.mean(losses[-20:]):.3f}" if losses else ""), flush=True)
                idx = torch.randint(len(tr), (batch,), generator=g).tolist()
                convs = [[{"role": "user", "content": "<audio>\n" + CLOSED_PHRASING[attr]},
                          {"role": "assistant", "content": labels_of(tr[i])[attr]}]
                         for i in idx]
                media = [{"audio": [Features(frames[tr[i]["id"]][None])]} for i in idx]
                b = model.processor(convs, media)
                loss = model(**b)["loss"]
                opt.zero_grad()
                loss.backward()
                grad_norms.append(float(torch.nn.utils.get_total_norm(
                    [p.grad for p in params if p.grad is not None])))
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                losses.append(float(loss))
            train_s = time.perf_counter() - t0
            model.eval()
            right = right_noise = 0
            shift, spread = [], []
            for r in te:
                ans = choices.index(labels_of(r)[attr])
                s = torch.tensor(score_choices(model, CLOSED_PHRASING[attr], choices,
                                               Features(frames[r["id"]][None])))
                sn = torch.tensor(score_choices(model, CLOSED_PHRASING[attr], choices,
                                                Features(noise[r["id"]][None])))
                lp, lpn = torch.log_softmax(s, 0), torch.log_softmax(sn, 0)
                right += int(s.argmax()) == ans
                right_noise += int(sn.argmax()) == ans
                shift.append(float((lp[ans] - lpn[ans]).abs()))
                spread.append(float(lp[ans]))
            counts = [sum(labels_of(r)[attr] == c for r in te) for c in choices]
            k = 10
            out.setdefault(attr, {})[variant] = {
                "n_train": len(tr), "n_eval": len(te), "steps": steps, "lr": lr,
                "batch": batch, "train_s": train_s,
                "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:])),
                "grad_norm_first": float(np.mean(grad_norms[:k])),
                "grad_norm_last": float(np.mean(grad_norms[-k:])),
                "accuracy": right / len(te), "noise_accuracy": right_noise / len(te),
                "majority": max(counts) / len(te),
                "mean_abs_logp_shift_clip_vs_noise": float(np.mean(shift)),
                "std_logp_answer_across_clips": float(np.std(spread))}
            e = out[attr][variant]
            print(f"rung c [{attr}, input_norm={variant}] acc {e['accuracy']:.2f} noise "
                  f"{e['noise_accuracy']:.2f} majority {e['majority']:.2f} | loss "
                  f"{e['loss_first']:.2f}->{e['loss_last']:.2f} | adapter grad norm "
                  f"{e['grad_norm_first']:.3g}->{e['grad_norm_last']:.3g} | |dlogp| clip vs "
                  f"noise {e['mean_abs_logp_shift_clip_vs_noise']:.3f} | {train_s:.0f} s",
                  flush=True)
    return out


def main() -> int:
    """Run the chosen rungs and merge their results into benchmarks/results/hearing.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rung", nargs="+", choices=["a", "b", "c"], default=["a", "b"])
    ap.add_argument("--corpus", default="offline")
    ap.add_argument("--encoder", default="spectral", help="an encoder preset name")
    ap.add_argument("--clips", type=int, default=None,
                    help="the corpus's first N clips (default: all; features of a slow "
                         "encoder such as basic-pitch take ~1 s per clip on 2 cores)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps (default: 600 for b, 120 for c)")
    ap.add_argument("--lr", type=float, default=3e-3, help="the recipe's adapter rate")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--attributes", nargs="+", default=["mode"], choices=ATTRS)
    ap.add_argument("--variants", nargs="+", default=["none", "standardize"],
                    choices=["none", "standardize"], help="rung c input_norm settings")
    ap.add_argument("--eval-clips", type=int, default=120, help="rung c held-out clips")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows, frames, enc_cfg = load_corpus(args.corpus, args.encoder, args.clips)
    from mullm.data.corpora import corpus_dir

    key = f"{args.corpus}/{args.encoder}" + (f"/{args.clips}" if args.clips else "")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    entry = results.setdefault(key, {"threads": torch.get_num_threads()})
    if "a" in args.rung:
        entry["a"] = rung_a(rows, frames)
    if "b" in args.rung:
        entry["b"] = rung_b(rows, frames, enc_cfg, args.steps or 600, args.lr, args.batch)
    if "c" in args.rung:
        c = rung_c(rows, frames, enc_cfg, args.attributes, args.steps or 120, args.lr,
                   args.batch, args.eval_clips, args.variants,
                   corpus_dir(args.corpus, args.clips))
        for attr, v in c.items():
            entry.setdefault("c", {}).setdefault(attr, {}).update(v)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
