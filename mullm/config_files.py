"""Config files: where they are, how a name finds one, and how presets compose.

The shipped configs live in the repository's top-level ``configs/`` (encoder, adapter, LLM
and model presets, ``quickstart.yaml``) and ``projects/`` (one folder per reproduced
system). A built wheel installs them as package data, as ``mullm/configs`` and
``mullm/projects`` (setup.py maps the folders); a checkout or an editable install reads them
where they are. So a name works from anywhere::

    resolve_config_path("offline-default")         # configs/models/offline-default.yaml
    resolve_config_path("encoders/mert-95m")       # configs/encoders/mert-95m.yaml
    resolve_config_path("quickstart")              # configs/quickstart.yaml
    resolve_config_path("projects/mu-llama/train") # projects/mu-llama/train.yaml

Composition: any mapping in a config may name a preset with ``preset: NAME``. It then starts
from that preset (itself composed) and its other keys override the preset's, mappings
merging key by key and everything else (lists, scalars, null) replacing::

    encoder:
      preset: encoders/mert-330m
      layers: -1          # one explicit, commented difference from the preset

A mapping that names a preset replaces whatever a base config had at that place (it starts
afresh from its own preset) rather than merging into it. Loaders compose after applying
dotted overrides, so ``model.modalities.audio.encoder.preset=encoders/mert-95m`` swaps a
preset from the command line.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from mullm.errors import ConfigError

PRESET_KEY = "preset"
# Folders of shipped configs; names of files in "projects" keep the "projects/" prefix.
DATA_FOLDERS = ("configs", "projects")
_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(folder: str) -> Path:
    """The folder holding the shipped ``configs`` or ``projects``.

    An installed wheel has them inside the package (``mullm/configs``: package data); a
    checkout or an editable install has them beside the package, at the repository root.
    The package's own copy is looked at first, so an installed mullm never reads some other
    ``configs`` folder that happens to sit next to it in site-packages.
    """
    if folder not in DATA_FOLDERS:
        raise ValueError(f"data_dir: {folder!r} is not one of {list(DATA_FOLDERS)}")
    for candidate in (_PACKAGE_DIR / folder, _PACKAGE_DIR.parent / folder):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"the shipped {folder}/ folder is missing: looked in {_PACKAGE_DIR / folder} (an "
        f"installed package) and {_PACKAGE_DIR.parent / folder} (a checkout); reinstall mullm"
    )


def config_names() -> dict[str, Path]:
    """Every shipped config by its full name: ``encoders/mert-95m``, ``quickstart``,
    ``projects/mu-llama/train`` (the path without ``configs/`` and without ``.yaml``)."""
    names: dict[str, Path] = {}
    for folder in DATA_FOLDERS:
        root = data_dir(folder)
        for path in sorted(root.rglob("*.yaml")):
            rel = path.relative_to(root).with_suffix("").as_posix()
            names[rel if folder == "configs" else f"{folder}/{rel}"] = path
    return names


def short_names(names: dict[str, Path]) -> dict[str, str]:
    """Short name -> full name, for presets whose file name alone is unique
    (``offline-default`` -> ``models/offline-default``)."""
    stems: dict[str, list[str]] = {}
    for full in names:
        if not full.startswith("projects/"):
            stems.setdefault(full.rsplit("/", 1)[-1], []).append(full)
    return {s: fulls[0] for s, fulls in stems.items() if len(fulls) == 1 and s not in names}


def _as_name(text: str) -> str:
    """``./configs/encoders/spectral.yaml`` -> ``encoders/spectral``: the paths the docs
    show work as names too, from any folder."""
    name = text.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.startswith("mullm/"):
        name = name[len("mullm/"):]
    if name.startswith("configs/"):
        name = name[len("configs/"):]
    return name


def resolve_config_path(source: str | Path, relative_to: str | Path | None = None) -> Path:
    """A config file for ``source``: an existing YAML path, or the name of a shipped config.

    A relative path is looked up in ``relative_to`` when given (the folder of the config
    that names a preset: the current folder must not change what a shipped project means),
    else in the current folder. A name is a shipped config's full name
    (``encoders/mert-95m``, ``projects/llark/train``), its short name when unique
    (``offline-default``), or its repository path (``configs/quickstart.yaml``). Anything
    else raises ``ConfigError`` listing the known names, with the closest one as a hint.
    """
    text = str(source)
    path = Path(text).expanduser()
    candidate = path if path.is_absolute() or relative_to is None else Path(relative_to) / path
    if candidate.is_file():
        return candidate
    if path.is_absolute():
        raise ConfigError(f"{path}: config file not found")
    names = config_names()
    aliases = short_names(names)
    name = _as_name(text)
    if name in names:
        return names[name]
    if name in aliases:
        return names[aliases[name]]
    close = difflib.get_close_matches(name, list(names) + list(aliases), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    what = ("is a folder, not a config file, and not the name of a shipped config"
            if candidate.is_dir() else "is neither a config file nor the name of a shipped config")
    raise ConfigError(
        f"{text!r} {what}.{hint} Known names: {', '.join(names)} (a preset's file name alone "
        f"also works when unique, e.g. 'offline-default')"
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in any error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def read_config(source: str | Path) -> tuple[dict[str, Any], Path]:
    """Resolve ``source`` (a path or a name) and read it as written, presets not expanded."""
    path = resolve_config_path(source)
    return read_yaml(path), path


def compose(data: dict[str, Any], where: str | Path = "<dict>") -> dict[str, Any]:
    """A new mapping with every ``preset:`` expanded; ``data`` is left untouched.

    ``where`` (the file ``data`` came from) names the file in errors and is where relative
    preset paths are looked up first.
    """
    base = Path(where).parent if str(where) != "<dict>" else None
    return _compose(data, str(where), base, "", ())


def _compose(node: dict[str, Any], where: str, base: Path | None, key: str,
             stack: tuple[Path, ...]) -> dict[str, Any]:
    if PRESET_KEY not in node:
        return {k: _compose_value(v, where, base, _join(key, k), stack) for k, v in node.items()}
    name = node[PRESET_KEY]
    pkey = _join(key, PRESET_KEY)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: {pkey}: expected the name of a preset such as "
                          f"'encoders/mert-330m', got {name!r}")
    try:
        path = resolve_config_path(name, relative_to=base)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {pkey}: {exc}") from None
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise ConfigError(f"{where}: {pkey}: {name!r} names itself through its presets "
                          f"({chain})")
    preset = _compose(read_yaml(path), str(path), path.parent, "", (*stack, resolved))
    rest = {k: v for k, v in node.items() if k != PRESET_KEY}
    return _merge(preset, rest, where, base, key, stack)


def _compose_value(value: Any, where: str, base: Path | None, key: str,
                   stack: tuple[Path, ...]) -> Any:
    if isinstance(value, dict):
        return _compose(value, where, base, key, stack)
    return copy.deepcopy(value)


def _merge(preset: dict[str, Any], over: dict[str, Any], where: str, base: Path | None,
           key: str, stack: tuple[Path, ...]) -> dict[str, Any]:
    """``over`` (as written) on top of ``preset`` (already composed)."""
    out = dict(preset)
    for k, v in over.items():
        sub = _join(key, k)
        # A mapping that names its own preset starts afresh from it; merging it into the
        # outer preset's mapping would mix two presets' fields (spectral options on MERT).
        if isinstance(v, dict) and PRESET_KEY not in v and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, where, base, sub, stack)
        else:
            out[k] = _compose_value(v, where, base, sub, stack)
    return out


def _join(key: str, part: Any) -> str:
    return f"{key}.{part}" if key else str(part)


def describe(path: Path, width: int = 100) -> str:
    """The first sentence of a config's leading comment, skipping its command line (for
    listings), cut to ``width`` characters."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#"):
            break
        text = text.lstrip("#").strip()
        if not words and text.startswith(("mullm ", "torchrun ", "python ")):
            continue
        words += text.split()
        if text.endswith(".") or text.endswith(":"):
            break
    out = " ".join(words).rstrip(":")
    return out if len(out) <= width else out[: width - 3].rstrip() + "..."
