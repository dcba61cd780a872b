"""A PNG of the training curves (loss, eval loss, learning rate) for the run folder."""

from __future__ import annotations

from pathlib import Path

from mullm.train.metrics import read_metrics


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Draw ``run_dir/metrics.jsonl`` into ``run_dir/curves.png``; None if nothing logged."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    train = read_metrics(path, "train")
    evals = read_metrics(path, "eval")
    if not train:
        return None
    out = Path(out) if out else run_dir / "curves.png"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax1.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-",
                 label="eval loss")
    stages = {}
    for r in train:
        stages.setdefault(r.get("stage"), r["step"])
    for name, step in list(stages.items())[1:]:
        ax1.axvline(step, color="grey", ls="--", lw=0.8)
        ax1.text(step, ax1.get_ylim()[1], f" {name}", va="top", fontsize=8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for key in sorted({k for r in train for k in r if k.startswith("lr/")}):
        ax2.plot([r["step"] for r in train if key in r], [r[key] for r in train if key in r],
                 label=key[3:])
    ax2.set_xlabel("step")
    ax2.set_ylabel("learning rate")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
