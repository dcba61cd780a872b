"""The package's shape: no module imports a higher layer, no import cycle, no oversized file.

Layers, lowest first (a module may import its own layer or lower ones):

0. ``_version``, ``errors``, ``utils``: no knowledge of music models.
1. ``config``, ``config_files``, ``audio`` (with ``audio_av``, ``audio_checks``), ``image``:
   configs and checked media files; ``outputs.config`` (the music-output config dataclasses,
   kept beside their code but as plain as the rest of the configs).
2. ``encoders``, ``adapters``, ``features``, ``injection``, ``llm``: the frozen and trainable
   parts, and the feature cache of encoder outputs.
3. ``media``, ``processor``: inputs for a model, built without one; ``outputs.vocab`` (the
   output tokens' names, which the processor adds to the vocabulary).
4. ``model``, ``model_io``, ``outputs``: the assembled model and what it can produce.
5. ``data``, ``eval``, ``streaming``: data sets and evaluation, on top of a model.
6. ``train``, ``caption``, ``eval_job``, ``demo``, ``quickstart``: the jobs (and ``testing``,
   ``testing_audio``: tiny stand-ins for tests and benchmarks).
7. ``commands``, ``cli`` and the package root: entry points.

Imports inside ``if TYPE_CHECKING:`` are annotations only and do not count; imports inside
functions do (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mullm"
LAYERS = [
    ["_version", "errors", "utils"],
    ["config", "config_files", "audio", "audio_av", "audio_checks", "image", "outputs.config"],
    ["encoders", "adapters", "features", "injection", "llm"],
    ["media", "processor", "outputs.vocab"],
    ["model", "model_io", "outputs"],
    ["data", "eval", "streaming"],
    ["train", "caption", "eval_job", "demo", "quickstart", "testing", "testing_audio"],
    ["commands", "cli", ""],
]
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, known: set[str]) -> set[str]:
    """mullm modules ``path`` imports, resolving ``from pkg import submodule``."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.split(".")[0] == "mullm")
            elif isinstance(child, ast.ImportFrom) and child.module and \
                    child.module.split(".")[0] == "mullm" and child.level == 0:
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    out.add(sub if sub in known else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def _layer(module: str) -> int:
    """The layer of the longest entry of ``LAYERS`` that names ``module`` or a package of it
    (``outputs.config`` before ``outputs``)."""
    rel = module.split(".", 1)[1] if "." in module else ""
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if rel == name or rel.startswith(name + ".") or (name == "" and rel == ""):
                if best is None or len(name) > best[1]:
                    best = (i, len(name))
    if best is None:
        raise AssertionError(f"{module}: not in any layer of tests/test_layers.py; add it")
    return best[0]


def test_no_module_imports_a_higher_layer() -> None:
    mods = _modules()
    bad = []
    for name, path in sorted(mods.items()):
        for dep in sorted(_imports(path, set(mods))):
            if _layer(dep) > _layer(name):
                bad.append(f"{name} (layer {_layer(name)}) imports {dep} "
                           f"(layer {_layer(dep)})")
    assert not bad, "\n".join(bad)


def test_encoders_never_import_data() -> None:
    mods = _modules()
    for name, path in mods.items():
        if name.startswith("mullm.encoders"):
            assert not {d for d in _imports(path, set(mods)) if d.startswith("mullm.data")}, name


def test_no_import_cycle() -> None:
    mods = _modules()
    known = set(mods)
    graph = {n: {d for d in _imports(p, known) if d in known and d != n}
             for n, p in mods.items()}
    # A package's __init__ re-exporting its submodules is not a cycle with them.
    for n in graph:
        graph[n] = {d for d in graph[n] if not n.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                walk(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            walk(n)


def test_no_source_file_over_the_size_limit() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an encoder importing the training loop is flagged."""
    bad = tmp_path / "mod.py"
    bad.write_text("def f():\n    from mullm.train.trainer import Trainer\n")
    deps = _imports(bad, set(_modules()))
    assert "mullm.train.trainer" in deps
    assert _layer("mullm.train.trainer") > _layer("mullm.encoders.spectral")
    guarded = tmp_path / "guarded.py"
    guarded.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from mullm.model import MusicLLM\n")
    assert _imports(guarded, set(_modules())) == set()
