"""Pinned multiple-choice prompts, seeded option order and the answer parser.

A benchmark's score moves by several points with its prompt and its answer parser, so both
are fixed here, named, and written into every report (``PromptSpec.record``):

* ``muchomusic``: the prompt of MuChoMusic's ``prepare_prompts.py`` (``get_prompts``,
  without in-context examples): ``"Question: {q}\\n Options: (A) .. (B) .. \\n The correct
  answer is: "``.
* ``rulistening``: the prompt of the RUListening dataset card ("Provide your best guess of
  this question. Think step by step. ... [[Letter]]"); its answers are read from ``[[X]]``.
* ``mullm``: mullm's own, for benchmarks that publish none (MMAU's and MMAR's repositories
  give an evaluation script for answers, not a prompt): the question, one option per line
  and "Answer with the letter of the correct option."

The parser reads a letter first (``[[B]]``, a leading ``B``/``(B)``/``B.``, or "answer is
B"), then an option's text (exactly one option contained in the reply, or the reply equal to
one); anything else is unparsable and counted (the instruction-following rate).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class PromptSpec:
    """A named prompt template and where it comes from."""

    name: str
    template: str  # fields: {question}, {options}
    option_format: str  # how one option is written: fields {letter}, {text}
    option_sep: str
    source: str
    max_new_tokens: int  # generation budget the prompt needs (RUListening asks to reason)

    def render(self, question: str, options: list[str]) -> str:
        """The user text for ``question`` with ``options`` in the given order.

        Raises:
            ValueError: more options than letters.
        """
        if len(options) > len(LETTERS):
            raise ValueError(f"{len(options)} options: at most {len(LETTERS)} can be lettered")
        opts = self.option_sep.join(self.option_format.format(letter=LETTERS[i], text=t)
                                    for i, t in enumerate(options))
        return self.template.format(question=question.strip(), options=opts)

    def record(self) -> dict[str, str | int]:
        """What the report keeps of the prompt."""
        return {"name": self.name, "template": self.template,
                "option_format": self.option_format, "option_sep": self.option_sep,
                "source": self.source, "max_new_tokens": self.max_new_tokens}


PROMPTS: dict[str, PromptSpec] = {
    "muchomusic": PromptSpec(
        "muchomusic", "Question: {question}\n Options: {options}\n The correct answer is: ",
        "({letter}) {text} ", "",
        "MuChoMusic prepare_prompts.py get_prompts (mulab-mir/muchomusic), no in-context "
        "examples", 32),
    "rulistening": PromptSpec(
        "rulistening",
        "Provide your best guess of this question. Think step by step. Question: {question} "
        "Options: {options} Write out your guess in the format of [[Letter]], such as [[A]], "
        "[[B]], [[C]], or [[D]].",
        "({letter}) {text}", " ", "RUListening dataset card (yongyizang/RUListening README)",
        256),
    "mullm": PromptSpec(
        "mullm", "{question}\nOptions:\n{options}\nAnswer with the letter of the correct "
        "option.", "({letter}) {text}", "\n",
        "mullm default (the benchmark publishes no prompt)", 32),
}
# Which pinned prompt each format uses unless told otherwise.
DEFAULT_PROMPT = {"muchomusic": "muchomusic", "rulistening": "rulistening", "mmau": "mullm",
                  "mmar": "mullm", "conversations": "mullm"}


def option_order(item_id: str, n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` fixed by (``seed``, ``item_id``): the order the options
    are shown in. The same for every condition and scorer of an item, and independent of
    the other items (so a resumed or sharded run shows the same order)."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return [int(i) for i in rng.permutation(n)]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9#]+", " ", text.lower()).strip()


_LEADING = re.compile(r"^\s*[\(\[]?([A-Z])[\)\]]?(?=$|[\s.:,;)\]])")
_STATED = re.compile(r"answer(?:\s+is)?\s*[:\-]?\s*[\(\[]?([A-Z])[\)\]]?(?=$|[\s.:,;)\]])",
                     re.IGNORECASE)
_BRACKETS = re.compile(r"\[\[\s*([A-Z])\s*\]\]")


def parse_answer(text: str, options: list[str]) -> tuple[int | None, str]:
    """The option a generated reply chose: (index into ``options`` or None, how it was read:
    "letter", "text" or "unparsable").

    Letters beyond the options are not read as an answer. The option text matches when
    exactly one option's normalised text occurs in the normalised reply as whole words,
    or the reply equals one option.
    """
    n = len(options)
    reply = text.strip()
    # "[[B]]" (RUListening's format) anywhere, then a leading letter, then "answer is B".
    found = _BRACKETS.findall(reply)
    if found:
        idx = LETTERS.find(found[-1])
        return (idx, "letter") if 0 <= idx < n else (None, "unparsable")
    m = _LEADING.match(reply)
    if m and LETTERS.find(m.group(1)) < n:
        token = reply[m.start():m.end()].strip()
        # "A minor key" starts with a word, not a letter: a bare leading capital counts only
        # alone or followed by ".", ")", ":" or "]".
        alone = not reply[m.end():].strip()
        marked = token.startswith(("(", "[")) or reply[m.end():m.end() + 1] in (".", ")",
                                                                                   ":", "]")
        if alone or marked:
            return LETTERS.find(m.group(1)), "letter"
    m = _STATED.search(reply)
    if m and 0 <= LETTERS.find(m.group(1)) < n:
        return LETTERS.find(m.group(1)), "letter"
    norm = _norm(reply)
    if not norm:
        return None, "unparsable"
    exact = [i for i, o in enumerate(options) if _norm(o) == norm]
    if len(exact) == 1:
        return exact[0], "text"
    padded = f" {norm} "
    hits = [i for i, o in enumerate(options) if _norm(o) and f" {_norm(o)} " in padded]
    if len(hits) > 1:
        # An option inside another ("major" in "C major") does not count twice.
        hits = [i for i in hits if not any(j != i and f" {_norm(options[i])} "
                                           in f" {_norm(options[j])} " for j in hits)]
    if len(hits) == 1:
        return hits[0], "text"
    return None, "unparsable"


__all__ = ["DEFAULT_PROMPT", "LETTERS", "PROMPTS", "PromptSpec", "option_order",
           "parse_answer"]
