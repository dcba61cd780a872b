"""The closed questions (``closed.closed_items``) through the evaluation suite.

The quickstart's and the learning benchmark's table: each question scored by option
log-probability (the question lists its allowed answers itself, so the prompt is the
question as given), batched across clips, under the suite's audio-ablation controls (noise
of the same loudness, another clip, no audio), with chance and majority rates per
attribute. The first line of ``format_suite_table`` is the noise verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mullm.eval.closed import ATTRIBUTES, ClosedItem
from mullm.eval.engine import run_task
from mullm.eval.mcq import CONDITIONS, MCQTask, summarize_mcq
from mullm.eval.mcq_items import MCQItem

if TYPE_CHECKING:
    from mullm.model import MusicLLM


def as_mcq(items: list[ClosedItem]) -> list[MCQItem]:
    """Closed questions as multiple-choice items (dimension = the attribute)."""
    return [MCQItem(f"{it.clip}/{it.attribute}", it.audio, it.question, tuple(it.choices),
                    it.choices.index(it.answer), (it.attribute,), "closed") for it in items]


def evaluate_closed_suite(model: MusicLLM, items: list[ClosedItem],
                          conditions: tuple[str, ...] = CONDITIONS, batch_size: int = 16,
                          seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Accuracy per attribute under every condition, with chance and majority rates.

    Returns ``{"verdict", "attributes": {attribute: {"n", "accuracy", "noise_accuracy",
    "other_accuracy", "none_accuracy", "chance_uniform", "majority_rate",
    "majority_answer"}}, "summary": summarize_mcq's report, "records": [...]}``.
    """
    mcq = as_mcq(items)
    task = MCQTask(model, mcq, prompt="plain", conditions=conditions, scorers=("logprob",),
                   seed=seed)
    records: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mcq), desc="closed questions", unit="q")

    def sink(rec: dict[str, Any]) -> None:
        records.append(rec)
        if bar is not None:
            bar.update()

    was = model.training
    model.eval()
    try:
        run_task(task, mcq, sink, batch_size=batch_size)
    finally:
        model.train(was)
        if bar is not None:
            bar.close()
    summary = summarize_mcq(records, task.settings())
    order = {a: i for i, a in enumerate(ATTRIBUTES)}
    table = {}
    for attr in sorted(summary["dimensions"], key=lambda a: (order.get(a, 99), a)):
        e = summary["dimensions"][attr]
        row = {"n": e["n"], "accuracy": e["audio"]["logprob"]["accuracy"]}
        for c in conditions:
            if c != "audio":
                row[f"{c}_accuracy"] = e[c]["logprob"]["accuracy"]
        row.update(chance_uniform=e["chance_uniform"], majority_rate=e["majority_rate"],
                   majority_answer=e["majority_answer"])
        table[attr] = row
    return {"verdict": summary["verdict"], "attributes": table, "summary": summary,
            "records": records}


def format_suite_table(result: dict[str, Any]) -> str:
    """The verdict line, then attribute, n, model, each control, uniform and majority."""
    controls = [c for c in CONDITIONS if c != "audio"
                and any(f"{c}_accuracy" in e for e in result["attributes"].values())]
    head = (f"{'attribute':<12} {'n':>4} {'model':>7} "
            + " ".join(f"{c:>7}" for c in controls) + f" {'uniform':>8} {'majority':>9}")
    lines = [result["verdict"], "", head, "-" * len(head)]
    for attr, e in result["attributes"].items():
        ctrl = " ".join(f"{e[f'{c}_accuracy']:>7.2f}" if e.get(f"{c}_accuracy") is not None
                        else f"{'-':>7}" for c in controls)
        lines.append(f"{attr:<12} {e['n']:>4} {e['accuracy']:>7.2f} {ctrl} "
                     f"{e['chance_uniform']:>8.2f} {e['majority_rate']:>9.2f}")
    return "\n".join(lines)


__all__ = ["as_mcq", "evaluate_closed_suite", "format_suite_table"]
