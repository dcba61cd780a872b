"""Labels -> conversations by templates (LLark-style: captions, MIR facts, reasoning, QA).

``template_conversations`` turns ``metadata.jsonl`` rows into varied training conversations
(several phrasings per attribute, random attribute order, open / yes-no / multiple-choice /
counting / two-clip comparison questions, short and long captions). ``closed_questions`` is
the fixed, deterministic question set the learning benchmark scores: one phrasing per
attribute, the allowed answers listed, answers of one or two words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mullm.data.schema import Conversation
from mullm.utils.music import METRE_CLASSES, MODES, PITCH_NAMES, TEMPO_CLASSES, pitch_class

SOURCE = "mullm-templates"
FAMILY_CHOICES = ["piano", "chromatic percussion", "organ", "guitar", "strings", "ensemble",
                  "brass", "reed", "pipe", "synth lead", "synth pad"]
MODE_CHOICES = list(MODES)
TEMPO_CHOICES = list(TEMPO_CLASSES)
METRE_CHOICES = list(METRE_CLASSES[:2])  # "other" metres get no metre question
KEY_CHOICES = [f"{k} {m}" for m in MODE_CHOICES for k in PITCH_NAMES]

CLOSED_PHRASING = {
    "family": "Which instrument family plays this music? Answer with one of: "
              + ", ".join(FAMILY_CHOICES) + ".",
    "mode": "Is this music in a major or a minor key? Answer with one of: major, minor.",
    "tempo_class": "Is the tempo slow, moderate or fast? Answer with one of: slow, moderate, "
                   "fast.",
    "metre": "Is the metre duple or triple? Answer with one of: duple, triple.",
    "key": "What key is this music in? Answer with the tonic and the mode, for example "
           "'C major' or 'F# minor'.",
}


def key_name(row: dict) -> str:
    """'F# minor' from a row's key and mode (enharmonics respelled to the canonical name)."""
    return f"{PITCH_NAMES[pitch_class(row['key'])]} {row['mode']}"


def closed_questions(meta_row: dict) -> list[dict]:
    """The fixed benchmark questions a clip can answer: attribute, question, choices, answer.

    family only on single-family clips; metre only for duple/triple metres; key and mode only
    when the clip has them. Answers are exact members of ``choices``.
    """
    out = []
    fams = meta_row.get("families") or []
    if len(fams) == 1 and fams[0] in FAMILY_CHOICES:
        out.append(("family", FAMILY_CHOICES, fams[0]))
    if meta_row.get("mode") in MODE_CHOICES:
        out.append(("mode", MODE_CHOICES, meta_row["mode"]))
    if meta_row.get("tempo_class") in TEMPO_CHOICES:
        out.append(("tempo_class", TEMPO_CHOICES, meta_row["tempo_class"]))
    if meta_row.get("metre") in METRE_CHOICES:
        out.append(("metre", METRE_CHOICES, meta_row["metre"]))
    if meta_row.get("key") and meta_row.get("mode") in MODE_CHOICES:
        out.append(("key", KEY_CHOICES, key_name(meta_row)))
    return [{"attribute": a, "question": CLOSED_PHRASING[a], "choices": list(c), "answer": ans}
            for a, c, ans in out]


# ---- natural-language pieces ----------------------------------------------------------------

_PAREN = {"finger": "fingered", "pick": "picked", "nylon": "nylon-string",
          "steel": "steel-string", "bass + lead": "bass-and-lead"}


def instrument_phrase(name: str) -> str:
    """'Electric Bass (pick)' -> 'picked electric bass'; 'Drum Kit' -> 'drums'."""
    if name == "Drum Kit":
        return "drums"
    m = re.match(r"^(.*?)(?: \d)? \((.*)\)$", name)
    if m:
        base, qual = m.group(1), m.group(2)
        base = {"Lead": "synth lead", "Pad": "synth pad"}.get(base, base)
        return f"{_PAREN.get(qual, qual)} {base}".lower()
    return re.sub(r" \d$", "", name).lower()


def join_words(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_STYLE_NOUN = {"chorale": "four-part chorale", "folk": "folk tune", "bossa": "bossa nova",
               "five-four groove": "groove in five", "hymn": "hymn-like piece"}
_SETTING = {
    "rock groove": "a driving scene, a workout or a lively party",
    "waltz": "a ballroom dance or a light-hearted film scene",
    "ballad": "a quiet, reflective moment or a slow dance",
    "march": "a parade, a ceremony or an upbeat procession",
    "bossa": "a relaxed cafe, a beach bar or a summer evening",
    "jig": "a folk dance or a lively pub session",
    "slip jig": "a folk dance in a bouncy three-beat swing",
    "hymn": "a church service or a calm, solemn moment",
    "five-four groove": "a quirky, restless scene that keeps the listener off balance",
    "shuffle": "a laid-back bar or a strolling scene",
    "chorale": "a church service or a moment of solemn reflection",
    "folk": "a village gathering, storytelling or a simple sing-along",
}
_MOOD = {"major": ["bright", "cheerful", "warm", "open"],
         "minor": ["dark", "melancholic", "wistful", "sombre"]}
_TEMPO_WORD = {"slow": ["slow", "unhurried", "leisurely"],
               "moderate": ["moderate", "medium", "walking"],
               "fast": ["fast", "brisk", "lively"]}


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _style_noun(row: dict) -> str:
    return _STYLE_NOUN.get(row.get("style", ""), row.get("style") or "piece")


def _facts(row: dict, rng: np.random.Generator) -> dict[str, str]:
    """One sentence per attribute, phrasing drawn at random."""
    inst = join_words([instrument_phrase(i) for i in row.get("instruments", [])])
    key = key_name(row) if row.get("key") else None
    bpm = int(round(row["tempo_bpm"])) if row.get("tempo_bpm") else None
    f: dict[str, str] = {}
    if key:
        f["key"] = _pick(rng, [f"It is in {key}.", f"The key is {key}.",
                               f"The music is set in {key}.", f"The tonal centre is {key}."])
    if bpm:
        tw = _pick(rng, _TEMPO_WORD[row["tempo_class"]])
        f["tempo"] = _pick(rng, [f"The tempo is {tw}, around {bpm} BPM.",
                                 f"It moves at a {tw} {bpm} beats per minute.",
                                 f"The pulse sits near {bpm} BPM, a {tw} pace."])
    if row.get("time_signature"):
        ts, metre = row["time_signature"], row.get("metre")
        f["metre"] = _pick(rng, [f"It is in {ts} time.", f"The time signature is {ts}"
                                 + (f", a {metre} metre." if metre in ("duple", "triple")
                                    else "."), f"The beats group in {ts}."])
    if inst:
        f["instruments"] = _pick(rng, [f"The instrumentation is {inst}.",
                                       f"You can hear {inst}.", f"It is played by {inst}.",
                                       f"{inst[0].upper() + inst[1:]} carry the music."
                                       if len(row["instruments"]) > 1 else
                                       f"A solo {inst} plays throughout."])
    return f


def short_caption(row: dict, rng: np.random.Generator) -> str:
    """One sentence: tempo word, mode mood, style, key and instruments."""
    mood = _pick(rng, _MOOD[row["mode"]]) if row.get("mode") in _MOOD else ""
    tw = _pick(rng, _TEMPO_WORD[row["tempo_class"]]) if row.get("tempo_class") else ""
    inst = join_words([instrument_phrase(i) for i in row.get("instruments", [])])
    head = " ".join(w for w in (tw, mood, _style_noun(row)) if w)
    parts = [_article(head)]
    if row.get("key"):
        parts.append(f"in {key_name(row)}")
    if inst:
        parts.append(_pick(rng, [f"played by {inst}", f"for {inst}", f"featuring {inst}"]))
    s = " ".join(parts)
    return s[0].upper() + s[1:] + "."


def attribute_caption(row: dict) -> str:
    """One plain sentence that names the closed questions' attributes in their answer words:
    "A fast triple-metre piece in G minor, played by brass." (tempo class, metre when duple
    or triple, key and mode, the instrument families). No synonyms, so a generated caption
    can be scored word by word against the labels (``mullm.eval.captions``)."""
    head = " ".join(w for w in (row.get("tempo_class"),
                                f"{row['metre']}-metre" if row.get("metre") in METRE_CHOICES
                                else None, "piece") if w)
    parts = [_article(head)]
    if row.get("key") and row.get("mode") in MODE_CHOICES:
        parts.append(f"in {key_name(row)}")
    fams = [f for f in row.get("families", []) if f != "drums"]
    s = " ".join(parts)
    if fams:
        s += ", played by " + join_words(fams) + (
            " with drums" if "drums" in row.get("families", []) else "")
    return s[0].upper() + s[1:] + "."


def long_caption(row: dict, rng: np.random.Generator) -> str:
    """Several sentences, attributes in random order, plus mood and a possible setting."""
    facts = list(_facts(row, rng).values())
    rng.shuffle(facts)
    opening = short_caption(row, rng)
    extra = []
    if row.get("mode") in _MOOD:
        extra.append(_pick(rng, [f"The {row['mode']} mode gives it a "
                                 f"{_pick(rng, _MOOD[row['mode']])} character.",
                                 f"Its harmony feels {_pick(rng, _MOOD[row['mode']])}."]))
    if row.get("style") in _SETTING:
        extra.append(f"It would suit {_SETTING[row['style']]}.")
    return " ".join([opening] + facts + extra)


# ---- question generators ----------------------------------------------------------------------

_Q = {
    "key": ["What key is this piece in?", "Which key is the music in?",
            "Can you tell me the key of this track?", "What is the tonal centre and mode?"],
    "mode": ["Is this in a major or a minor key?", "Does this sound major or minor?",
             "What mode is the piece in, major or minor?"],
    "tempo": ["What is the tempo?", "How fast is this piece, roughly in BPM?",
              "Estimate the tempo in beats per minute.", "At what tempo does this play?"],
    "time_signature": ["What is the time signature?", "What metre is this in?",
                       "How are the beats grouped in each bar?"],
    "instruments": ["Which instruments are playing?", "What instruments can you hear?",
                    "Name the instruments in this recording.", "Who plays in this piece?"],
    "style": ["What style is this?", "How would you describe the genre or style?",
              "What kind of piece is this?"],
}


def _answer(attr: str, row: dict, rng: np.random.Generator) -> str:
    if attr == "key":
        return _pick(rng, [f"{key_name(row)}.", f"It is in {key_name(row)}.",
                           f"The key is {key_name(row)}."])
    if attr == "mode":
        return _pick(rng, [f"It is in a {row['mode']} key ({key_name(row)}).",
                           f"{row['mode'].capitalize()}.", f"It sounds {row['mode']}."])
    if attr == "tempo":
        bpm = int(round(row["tempo_bpm"]))
        return _pick(rng, [f"About {bpm} BPM, a {row['tempo_class']} tempo.",
                           f"Roughly {bpm} beats per minute.", f"Around {bpm} BPM."])
    if attr == "time_signature":
        ts, metre = row["time_signature"], row["metre"]
        return _pick(rng, [f"{ts}.", f"It is in {ts}, a {metre} metre." if metre != "other"
                           else f"It is in {ts}, an irregular metre.", f"The music is in {ts}."])
    if attr == "instruments":
        inst = join_words([instrument_phrase(i) for i in row["instruments"]])
        return _pick(rng, [f"{inst[0].upper() + inst[1:]}.", f"I hear {inst}.",
                           f"The piece is played by {inst}."])
    if attr == "style":
        return _pick(rng, [f"It is {_article(_style_noun(row))}.",
                           f"{_article(_style_noun(row)).capitalize()}."])
    raise ValueError(f"no answer template for attribute {attr!r}")


def _available(row: dict) -> list[str]:
    need = {"key": ("key", "mode"), "mode": ("mode",), "tempo": ("tempo_bpm", "tempo_class"),
            "time_signature": ("time_signature", "metre"), "instruments": ("instruments",),
            "style": ("style",)}
    return [a for a, fs in need.items() if all(row.get(f) for f in fs)]


def _gen_open_qa(row, rng, other):  # noqa: ANN001, ANN202
    attr = _pick(rng, _available(row))
    q = _pick(rng, _Q[attr])
    return "qa", [("<audio>\n" + q, _answer(attr, row, rng))], {"attribute": attr}, None


def _gen_yes_no(row, rng, other):  # noqa: ANN001, ANN202
    kinds = [k for k in ("mode", "drums", "fast", "triple") if
             (k == "mode" and row.get("mode")) or (k == "drums" and row.get("instruments"))
             or (k == "fast" and row.get("tempo_class"))
             or (k == "triple" and row.get("metre"))]
    k = _pick(rng, kinds)
    if k == "mode":
        ask = _pick(rng, MODE_CHOICES)
        yes = row["mode"] == ask
        q = _pick(rng, [f"Is this piece in a {ask} key?", f"Would you call this {ask}?"])
        a = (f"Yes, it is in {key_name(row)}." if yes
             else f"No, it is in {key_name(row)}, a {row['mode']} key.")
    elif k == "drums":
        yes = "Drum Kit" in row["instruments"]
        q = _pick(rng, ["Are there drums in this track?", "Does a drum kit play here?"])
        a = "Yes, a drum kit keeps the beat." if yes else "No, there are no drums."
    elif k == "fast":
        yes = row["tempo_class"] == "fast"
        q = _pick(rng, ["Is this a fast piece?", "Is the tempo fast?"])
        a = (f"Yes, it is fast, about {int(round(row['tempo_bpm']))} BPM." if yes else
             f"No, the tempo is {row['tempo_class']}, about {int(round(row['tempo_bpm']))} BPM.")
    else:
        yes = row["metre"] == "triple"
        q = _pick(rng, ["Is it in a triple metre?", "Does it count in three?"])
        a = (f"Yes, it is in {row['time_signature']}." if yes
             else f"No, it is in {row['time_signature']}.")
    return "qa", [("<audio>\n" + q, a)], {"attribute": k, "yes": yes}, None


def _gen_mcq(row, rng, other):  # noqa: ANN001, ANN202
    options = []
    if row.get("key") and row.get("mode"):
        options.append(("key", KEY_CHOICES, key_name(row)))
    if row.get("tempo_class"):
        options.append(("tempo", TEMPO_CHOICES, row["tempo_class"]))
    if row.get("metre"):
        options.append(("metre", ["duple", "triple", "other"], row["metre"]))
    fams = [f for f in row.get("families", []) if f != "drums"]
    if fams:
        options.append(("instrumentation", FAMILY_CHOICES + ["bass"], _pick(rng, fams)))
    dim, pool, right = options[int(rng.integers(len(options)))]
    wrong = [c for c in pool if c != right and (dim != "instrumentation" or c not in fams)]
    k = min(3, len(wrong))
    choices = [right] + [wrong[i] for i in rng.choice(len(wrong), size=k, replace=False)]
    order = rng.permutation(len(choices))
    choices = [choices[i] for i in order]
    answer = int(np.argmax(order == 0))
    letters = "ABCD"
    q = {"key": "Which key is this music in?", "tempo": "How would you describe the tempo?",
         "metre": "What kind of metre does this music have?",
         "instrumentation": "Which of these instrument families can be heard?"}[dim]
    body = "\n".join(f"({letters[i]}) {c}" for i, c in enumerate(choices))
    user = f"<audio>\n{q}\n{body}\nAnswer with the letter of the correct option."
    return "mcq", [(user, f"({letters[answer]}) {choices[answer]}")], {"attribute": dim}, {
        "choices": choices, "answer": answer, "dimensions": [dim]}


def _gen_count(row, rng, other):  # noqa: ANN001, ANN202
    inst = row.get("instruments") or []
    n = len(inst)
    if not n:
        return None
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
    q = _pick(rng, ["How many different instruments are playing?",
                    "Count the distinct instruments you can hear.",
                    "How many instruments make up this ensemble?"])
    a = f"{words[n].capitalize() if n < len(words) else n}: " + join_words(
        [instrument_phrase(i) for i in inst]) + "."
    return "qa", [("<audio>\n" + q, a)], {"attribute": "instrument_count", "count": n}, None


def _gen_compare(row, rng, other):  # noqa: ANN001, ANN202
    if other is None:
        return None
    a_bpm, b_bpm = row["tempo_bpm"], other["tempo_bpm"]
    first_faster = a_bpm > b_bpm
    q = _pick(rng, ["Here are two clips: <audio> and <audio>. Which one is faster?",
                    "First clip: <audio>\nSecond clip: <audio>\nWhich of the two has the "
                    "quicker tempo?"])
    which = "The first clip" if first_faster else "The second clip"
    ans = (f"{which} is faster: about {int(round(max(a_bpm, b_bpm)))} BPM against "
           f"{int(round(min(a_bpm, b_bpm)))} BPM.")
    return "qa", [(q, ans)], {"attribute": "tempo_comparison", "other": other["id"]}, None


def _gen_caption(row, rng, other):  # noqa: ANN001, ANN202
    long = rng.random() < 0.5
    q = _pick(rng, ["Describe this music in detail.", "Write a detailed caption for this "
                    "track.", "Give a full description of what you hear."] if long else
              ["Describe this music in one sentence.", "Caption this clip briefly.",
               "Summarise the music in a sentence."])
    a = long_caption(row, rng) if long else short_caption(row, rng)
    return "caption", [("<audio>\n" + q, a)], {"caption": "long" if long else "short"}, None


def _gen_mir(row, rng, other):  # noqa: ANN001, ANN202
    attrs = [a for a in ("key", "tempo", "time_signature") if a in _available(row)]
    if not attrs:
        return None
    q = _pick(rng, ["List the key, tempo and time signature.",
                    "Give the basic music-theory facts: key, tempo and metre.",
                    "What are the key, BPM and time signature of this recording?"])
    lines = []
    if "key" in attrs:
        lines.append(f"Key: {key_name(row)}")
    if "tempo" in attrs:
        lines.append(f"Tempo: {int(round(row['tempo_bpm']))} BPM ({row['tempo_class']})")
    if "time_signature" in attrs:
        lines.append(f"Time signature: {row['time_signature']} ({row['metre']})")
    rng.shuffle(lines)
    return "mir", [("<audio>\n" + q, "\n".join(lines))], {"attribute": "mir"}, None


def _gen_reasoning(row, rng, other):  # noqa: ANN001, ANN202
    if row.get("style") not in _SETTING or not row.get("tempo_class"):
        return None
    q = _pick(rng, ["What kind of scene or setting would this music suit, and why?",
                    "Where might you hear music like this, and why?",
                    "If you had to choose a place to play this, where would it be? Why?"])
    why = [f"it is {_article(_style_noun(row))}", f"with a {row['tempo_class']} tempo of "
           f"about {int(round(row['tempo_bpm']))} BPM"]
    if row.get("mode") in _MOOD:
        why.append(f"and {_article(_pick(rng, _MOOD[row['mode']]))} {row['mode']}-key colour")
    a = f"It would suit {_SETTING[row['style']]}, because " + " ".join(why) + "."
    return "chat", [("<audio>\n" + q, a)], {"attribute": "reasoning"}, None


def _gen_dialogue(row, rng, other):  # noqa: ANN001, ANN202
    attrs = list(_available(row))
    if len(attrs) < 2:
        return None
    rng.shuffle(attrs)
    turns = []
    for i, attr in enumerate(attrs[:3]):
        q = _pick(rng, _Q[attr])
        turns.append((("<audio>\n" if i == 0 else "") + q, _answer(attr, row, rng)))
    return "chat", turns, {"attribute": "dialogue"}, None


GENERATORS = {
    "caption": _gen_caption, "open_qa": _gen_open_qa, "yes_no": _gen_yes_no, "mcq": _gen_mcq,
    "count": _gen_count, "compare": _gen_compare, "mir": _gen_mir, "reasoning": _gen_reasoning,
    "dialogue": _gen_dialogue,
}


def audio_relpath(row: dict, meta_dir: Path, out_dir: Path) -> str:
    """A metadata row's audio path (relative to ``meta_dir``) made relative to ``out_dir``,
    where the conversations are written (conversation paths are relative to their file)."""
    p = Path(row["audio"])
    p = p if p.is_absolute() else meta_dir / p
    return os.path.relpath(p.resolve(), out_dir.resolve())


def _partner(row: dict, pool: Sequence[dict], rng: np.random.Generator) -> dict | None:
    """A random clip of the same split whose tempo differs by at least 15 % (or None)."""
    if not row.get("tempo_bpm"):
        return None
    for _ in range(20):  # rejection sampling keeps this O(1) per clip on large corpora
        o = pool[int(rng.integers(len(pool)))]
        if o is not row and o.get("tempo_bpm") and abs(
                o["tempo_bpm"] - row["tempo_bpm"]) >= 0.15 * row["tempo_bpm"]:
            return o
    return None


def template_conversations(rows: Sequence[dict], *, meta_dir: str | os.PathLike,
                           out_dir: str | os.PathLike, per_clip: int = 4, seed: int = 0,
                           closed: bool = True) -> list[Conversation]:
    """Conversations for every row: ``per_clip`` random templates (+ the closed questions)."""
    rng = np.random.default_rng(seed)
    meta_dir, out_dir = Path(meta_dir), Path(out_dir)
    by_split: dict[str | None, list[dict]] = {}
    for r in rows:
        by_split.setdefault(r.get("split"), []).append(r)
    names = sorted(GENERATORS)
    out: list[Conversation] = []
    for row in rows:
        audio = audio_relpath(row, meta_dir, out_dir)
        same_split = by_split[row.get("split")]
        made = 0
        tries = 0
        while made < per_clip and tries < per_clip * 10:
            tries += 1
            name = names[int(rng.integers(len(names)))]
            other = _partner(row, same_split, rng) if name == "compare" else None
            res = GENERATORS[name](row, rng, other)
            if res is None:
                continue
            task, qa, meta, mcq = res
            turns = []
            for u, a in qa:
                turns += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
            media = [audio]
            if name == "compare":
                media.append(audio_relpath(other, meta_dir, out_dir))
            # clip_source "mir" marks labels that were estimated, not known
            meta = {"clip": row["id"], "template": name, "clip_source": row.get("source"),
                    **meta}
            out.append(Conversation(id=f"{row['id']}-{name}-{made}", turns=turns, task=task,
                                    audio=media, split=row.get("split"), source=SOURCE,
                                    meta=meta, base_dir=out_dir, **(mcq or {})))
            made += 1
        if closed:
            for q in closed_questions(row):
                out.append(Conversation(
                    id=f"{row['id']}-closed-{q['attribute']}",
                    turns=[{"role": "user", "content": "<audio>\n" + q["question"]},
                           {"role": "assistant", "content": q["answer"]}],
                    task="qa", audio=[audio], split=row.get("split"), source=SOURCE,
                    meta={"clip": row["id"], "template": "closed", "attribute": q["attribute"],
                          "choices": q["choices"]}, base_dir=out_dir))
    return out


# Closed questions whose answers give each other away: a key answer ("A minor") names the
# mode. Packed into one conversation, the later question is answered from the earlier answer
# in the context instead of from the audio, and at evaluation (one question) that context is
# gone. pack_by_clip keeps such questions in separate conversations.
REVEALING_PAIRS: tuple[tuple[str, str], ...] = (("key", "mode"),)


def pack_by_clip(convs: Sequence[Conversation], seed: int = 0,
                 apart: Sequence[tuple[str, str]] = REVEALING_PAIRS) -> list[Conversation]:
    """Multi-turn conversations per clip from single-question, single-clip conversations.

    The questions of a clip are asked one after another in a seeded random order, the
    ``<audio>`` marker only in the first. Every answer is still a labelled turn, but the
    system prompt and the clip's audio tokens are paid for once per clip instead of once
    per question, and a batch carries several answers per clip. Two questions whose
    ``meta["attribute"]`` form a pair in ``apart`` never share a conversation (a clip then
    gets two or more), so no answer can be read off an earlier one.
    """
    rng = np.random.default_rng(seed)
    clash = {frozenset(pair) for pair in apart}
    groups: dict[tuple, list[Conversation]] = {}
    for c in convs:
        if len(c.audio) != 1 or len(c.turns) != 2:
            raise ValueError(f"conversation {c.id!r}: only single-question, single-clip "
                             "conversations can be packed")
        groups.setdefault((str(c.audio[0]), c.split), []).append(c)
    out = []
    for (_, split), group in groups.items():
        buckets: list[list[Conversation]] = []
        for k in rng.permutation(len(group)):
            conv = group[int(k)]
            attr = (conv.meta or {}).get("attribute")
            for bucket in buckets:
                if all(frozenset((attr, (o.meta or {}).get("attribute"))) not in clash
                       for o in bucket):
                    bucket.append(conv)
                    break
            else:
                buckets.append([conv])
        first = group[0]
        clip = (first.meta or {}).get("clip", first.id)
        for j, bucket in enumerate(buckets):
            turns: list[dict] = []
            for i, conv in enumerate(bucket):
                user, answer = conv.turns
                text = user["content"].replace("<audio>\n", "").replace("<audio>", "").strip()
                turns += [{"role": "user", "content": ("<audio>\n" if i == 0 else "") + text},
                          dict(answer)]
            out.append(Conversation(
                id=f"{clip}-packed" + (f"-{j + 1}" if j else ""), turns=turns, task=first.task,
                audio=list(first.audio), split=split, source=first.source,
                base_dir=first.base_dir,
                meta={"clip": clip, "template": "packed", "packed": [c.id for c in bucket]}))
    return out
