"""Evaluation reports: ``report.json``, ``report.md`` (tables) and plots, from a summary.

The markdown's first line is the verdict of a multiple-choice run (whether the model is
within a few points of its noise control); then the overall table (conditions x scorers,
with chance), the per-dimension table, the errors. Plots: per-dimension accuracy bars (one
bar per condition, one figure per scorer) for multiple choice; confusion matrices of the
key and style labels for MIR.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mullm.utils.atomic import atomic_write_text


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def mcq_tables(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: overall and per-dimension accuracy (%) per condition and scorer."""
    conds, scorers = summary["settings"]["conditions"], summary["settings"]["scorers"]
    cols = [f"{c} {s}" for s in scorers for c in conds]
    extra = ["IF rate"] if "generate" in scorers else []
    head = ["", "n", *cols, *extra, "uniform", "majority"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, e: dict[str, Any]) -> str:
        cells = [_pct(e[c][s]["accuracy"]) for s in scorers for c in conds]
        if extra:
            cells.append(_pct(e["audio"]["generate"].get("instruction_following")
                              if "audio" in e else None))
        return "| " + " | ".join([name, str(e["n"]), *cells, _pct(e["chance_uniform"]),
                                  _pct(e["majority_rate"])]) + " |"

    lines.append(row("**all**", summary["overall"]))
    for d, e in summary["dimensions"].items():
        lines.append(row(d, e))
    return lines


def mcq_markdown(summary: dict[str, Any]) -> str:
    """The multiple-choice report as markdown; the first line is the noise verdict."""
    s = summary["settings"]
    prompt = s["prompt"]
    lines = [summary["verdict"], "",
             f"# Multiple choice: {summary['scored']} of {summary['items']} items scored, "
             f"{summary['errors']} error(s) excluded", "",
             "Accuracy in % per condition (audio: the clip; noise: noise of the same "
             "loudness; other: another item's clip; none: no audio) and scorer (logprob: "
             "best option by log-probability; generate: greedy reply, parsed). IF rate: "
             "share of generated replies (audio condition) that could be parsed.", ""]
    lines += mcq_tables(summary)
    lines += ["", f"Prompt `{prompt['name']}` ({prompt['source']}):", "", "```",
              prompt["template"], "```", "",
              f"Option order shuffled with seed {s['seed']}; generation greedy, "
              f"{s['max_new_tokens']} new tokens at most."]
    if summary.get("skipped_conditions"):
        lines += ["", f"Conditions skipped (items): {summary['skipped_conditions']}"]
    if summary["error_items"]:
        lines += ["", "## Errors (excluded from every accuracy)", ""]
        lines += [f"- `{e['id']}`: {e['error']}" for e in summary["error_items"][:50]]
    return "\n".join(lines) + "\n"


def generation_markdown(summary: dict[str, Any]) -> str:
    """The caption / qa / mir report as markdown."""
    lines = [f"# {summary['task']}: {summary['scored']} of {summary['items']} items scored, "
             f"{summary['errors']} error(s) excluded", ""]
    for cond, res in summary["conditions"].items():
        lines += [f"## Condition: {cond}", ""]
        if summary["task"] == "mir":
            lines += ["| task | n | unmapped | score |", "|---|---|---|---|"]
            for task, e in res.items():
                score = {"key": f"MIREX {e.get('mirex_weighted', 0):.3f}",
                         "tempo": f"Acc1 {e.get('acc1', 0):.3f}, Acc2 {e.get('acc2', 0):.3f}",
                         "style": f"accuracy {e.get('accuracy', 0):.3f}",
                         "instruments": f"F1 {e.get('f1', 0):.3f} (P {e.get('precision', 0):.3f}"
                                        f", R {e.get('recall', 0):.3f})"}[task]
                lines.append(f"| {task} | {e['n']} | {e['unmapped']} | {score} |")
        else:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in res["scores"].items()]
            lines += [f"| {k} | missing: {why} |" for k, why in res["missing"].items()]
        lines.append("")
    if summary.get("label_mappings"):
        lines += ["Label mappings (free answer words -> label):", "", "```json",
                  json.dumps(summary["label_mappings"], indent=1), "```", ""]
    if summary["error_items"]:
        lines += ["## Errors (excluded)", ""]
        lines += [f"- `{e['id']}`: {e['error']}" for e in summary["error_items"][:50]]
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on evaluation machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as every report plot is (PNG, 110 dpi) and close
    it; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_dimensions(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """One bar chart per scorer: accuracy per dimension (and overall), a bar per
    condition, the uniform chance as a line. Returns the files written."""
    import numpy as np

    plt = _pyplot()
    conds, scorers = summary["settings"]["conditions"], summary["settings"]["scorers"]
    groups = {"all": summary["overall"], **summary["dimensions"]}
    names = [g for g, e in groups.items() if e["n"]]
    files = []
    for scorer in scorers:
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) + 2), 4))
        x = np.arange(len(names))
        w = 0.8 / len(conds)
        for k, c in enumerate(conds):
            vals = [100 * (groups[g][c][scorer]["accuracy"] or 0) for g in names]
            ax.bar(x + (k - (len(conds) - 1) / 2) * w, vals, w, label=c)
        for i, g in enumerate(names):
            ax.hlines(100 * groups[g]["chance_uniform"], i - 0.45, i + 0.45, colors="k",
                      linestyles="dashed", linewidth=1)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"Accuracy per dimension ({scorer}); dashed: uniform chance")
        ax.legend(title="condition", fontsize=8)
        files.append(_save(fig, out_dir / f"dimensions_{scorer}.png"))
    return files


def plot_confusions(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Confusion matrices (truth rows, estimate columns, counts) of the MIR key and style
    labels, condition ``audio`` (or the first). Returns the files written."""
    import numpy as np

    plt = _pyplot()
    conds = summary["conditions"]
    if not conds:
        return []
    res = conds.get("audio") or next(iter(conds.values()))
    files = []
    for task in ("key", "style"):
        conf = (res.get(task) or {}).get("confusion")
        if not conf:
            continue
        truths = sorted(conf)
        ests = sorted({e for row in conf.values() for e in row} | set(truths))
        m = np.array([[conf[t].get(e, 0) for e in ests] for t in truths])
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(ests) + 3),
                                        max(4, 0.35 * len(truths) + 2)))
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(ests)), ests, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(truths)), truths, fontsize=7)
        for i in range(len(truths)):
            for j in range(len(ests)):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6)
        ax.set_xlabel("estimate (from the free answer)")
        ax.set_ylabel("truth")
        ax.set_title(f"{task}: confusion matrix")
        files.append(_save(fig, out_dir / f"confusion_{task}.png"))
    return files


def write_report(summary: dict[str, Any], out_dir: str | os.PathLike,
                 extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; returns their
    paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**summary, **(extra or {})}
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    if summary["task"] == "mcq":
        md = mcq_markdown(summary)
        plots = plot_dimensions(summary, out_dir) if summary["scored"] else []
    else:
        md = generation_markdown(summary)
        plots = plot_confusions(summary, out_dir) if summary["task"] == "mir" else []
    if plots:
        md += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    data["plots"] = [p.name for p in plots]
    atomic_write_text(paths["json"], json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(paths["markdown"], md)
    for p in plots:
        paths[p.stem] = p
    return paths


__all__ = ["generation_markdown", "mcq_markdown", "mcq_tables", "plot_confusions",
           "plot_dimensions", "write_report"]
