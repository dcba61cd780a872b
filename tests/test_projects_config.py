"""Shipped configs: names, composition from presets, every YAML loading, and the package data.

A project's encoder, adapter and LLM must be exactly the preset it names plus the keys it
states, and it must state only keys that differ from the preset: that is what keeps the
projects from drifting away from the presets field by field.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import mullm
from mullm.config import (
    AdapterConfig,
    EncoderConfig,
    LLMConfig,
    ModelConfig,
    from_dict,
    load_model_config,
    resolve_config_path,
    to_dict,
    validate_adapter,
    validate_encoder,
)
from mullm.config_files import compose, config_names
from mullm.errors import ConfigError, ModelLoadError
from mullm.train.config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
COMPONENT_FOLDERS = {"encoders": EncoderConfig, "adapters": AdapterConfig, "llms": LLMConfig}
TRAINING = sorted(ROOT.glob("projects/*/*.yaml")) + [ROOT / "configs" / "quickstart.yaml"]
MODELS = sorted((ROOT / "configs" / "models").glob("*.yaml"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _all_yaml() -> list[Path]:
    return sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "projects").rglob("*.yaml"))


def _overlay(base: Any, stated: Any) -> Any:
    """What "the preset plus the stated keys" means: mappings key by key, the rest replaced."""
    if isinstance(base, dict) and isinstance(stated, dict):
        return {**base, **{k: _overlay(base.get(k), v) for k, v in stated.items()}}
    return stated


def _raw_model(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    return data["model"] if "model" in data else data


def _components(model: dict) -> list[tuple[str, dict, Any]]:
    """(key path, node as written, getter of the resolved dataclass) for LLM, encoders and
    adapters."""
    out = [("llm", model.get("llm") or {}, lambda m: m.llm)]
    for name, mod in (model.get("modalities") or {}).items():
        for part in ("encoder", "adapter"):
            out.append((f"modalities.{name}.{part}", mod.get(part) or {},
                        lambda m, n=name, p=part: getattr(m.modalities[n], p)))
    return out


# ------------------------------------------------------------------- every YAML loads


@pytest.mark.parametrize("path", _all_yaml(), ids=_rel)
def test_every_yaml_in_repo_loads_and_validates(path: Path) -> None:
    folder = path.relative_to(ROOT).parts
    if folder[0] == "configs" and folder[1] in COMPONENT_FOLDERS:
        data = compose(yaml.safe_load(path.read_text()), path)
        cfg = from_dict(COMPONENT_FOLDERS[folder[1]], data)
        {"encoders": validate_encoder, "adapters": validate_adapter}.get(folder[1],
                                                                        lambda c: None)(cfg)
        assert path.read_text().startswith("# "), f"{path}: a preset says what it is first"
    elif path in TRAINING:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and "mullm" in first, f"{path}: first line {first!r}"
        cfg = load_train_config(path)
        assert cfg.stages and cfg.data.train
    elif path in MODELS:
        assert isinstance(load_model_config(path), ModelConfig)
    else:
        pytest.fail(f"{path}: not a component preset, a model preset or a training config")


def test_component_presets_are_leaves() -> None:
    # A project's expected component is "preset + stated keys" only if presets do not chain.
    for folder in COMPONENT_FOLDERS:
        for path in sorted((ROOT / "configs" / folder).glob("*.yaml")):
            assert "preset" not in yaml.safe_load(path.read_text()), path


# ------------------------------------------------- projects = presets + stated overrides


@pytest.mark.parametrize("path", TRAINING + MODELS, ids=_rel)
def test_components_equal_their_preset_plus_stated_overrides(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    if path in TRAINING and "preset" in data:
        # A training config built on another (projects/m2ugen/audioldm2 on .../train): its
        # model is that one's plus the keys it states, and it states only differences.
        beside = path.parent / data["preset"]
        base = to_dict(load_model_config(beside if beside.is_file() else data["preset"]))
        stated = data.get("model") or {}
        assert to_dict(load_model_config(path)) == _overlay(base, stated)
        _assert_states_only_differences(_rel(path), base, stated)
        return
    raw = _raw_model(path)
    resolved = load_model_config(path)
    if "preset" in raw:  # a whole-model preset (the quickstart builds on offline-default)
        base = to_dict(load_model_config(raw["preset"]))
        stated = {k: v for k, v in raw.items() if k != "preset"}
        assert to_dict(resolved) == _overlay(base, stated)
        _assert_states_only_differences(_rel(path), base, stated)
        return
    for key, node, get in _components(raw):
        assert "preset" in node, f"{_rel(path)}: {key} restates fields instead of naming a preset"
        preset_path = resolve_config_path(node["preset"])
        assert preset_path.parent.name in COMPONENT_FOLDERS, (key, preset_path)
        cls = COMPONENT_FOLDERS[preset_path.parent.name]
        preset = yaml.safe_load(preset_path.read_text())
        stated = {k: v for k, v in node.items() if k != "preset"}
        assert get(resolved) == from_dict(cls, _overlay(preset, stated)), (path, key)
        _assert_states_only_differences(f"{_rel(path)}: {key}", preset, stated)


def _assert_states_only_differences(where: str, preset: dict, stated: dict) -> None:
    for k, v in stated.items():
        if isinstance(v, dict) and isinstance(preset.get(k), dict):
            _assert_states_only_differences(f"{where}.{k}", preset[k], v)
        else:
            assert preset.get(k) != v, f"{where}.{k}={v!r} restates the preset's value"


def test_salmonn_reads_the_last_mert_layer_as_an_explicit_override() -> None:
    enc = load_model_config("projects/salmonn-style/train").modalities["audio"].encoder
    mert = from_dict(EncoderConfig, yaml.safe_load(resolve_config_path("mert-330m").read_text()))
    assert (mert.layers, mert.layer_reduce) == ("all", "weighted")  # MU-LLaMA's reading
    assert (enc.layers, enc.layer_reduce) == (-1, "mean")
    assert to_dict(enc) | {"layers": "all", "layer_reduce": "weighted"} == to_dict(mert)
    text = (ROOT / "projects/salmonn-style/train.yaml").read_text()
    assert "last layer" in text  # the override says why


# ---------------------------------------------------------------------------- names


def test_names_resolve_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {"offline-default": "configs/models/offline-default.yaml",
             "models/offline-default": "configs/models/offline-default.yaml",
             "quickstart": "configs/quickstart.yaml",
             "configs/quickstart.yaml": "configs/quickstart.yaml",
             "encoders/mert-95m": "configs/encoders/mert-95m.yaml",
             "encoders/mert-95m.yaml": "configs/encoders/mert-95m.yaml",
             "llms/llama2-7b": "configs/llms/llama2-7b.yaml",
             "projects/mu-llama/train": "projects/mu-llama/train.yaml",
             "projects/mu-llama/train.yaml": "projects/mu-llama/train.yaml"}
    for name, rel in cases.items():
        assert resolve_config_path(name).resolve() == (ROOT / rel).resolve(), name
    # Every shipped config has a name, and every name loads.
    assert len(config_names()) == len(_all_yaml())
    assert load_train_config("quickstart").stages
    assert load_model_config("projects/m2ugen/train").modalities.keys() == \
        {"audio", "image", "video"}


def test_an_existing_file_wins_over_a_name(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("quickstart").write_text("llm: {policy: frozen}\n")
    assert resolve_config_path("quickstart") == Path("quickstart")
    assert load_model_config("quickstart").llm.policy == "frozen"


def test_unknown_name_lists_known_names_and_the_closest() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config_path("offline-defualt")
    msg = str(info.value)
    assert "'offline-defualt' is neither a config file nor the name of a shipped config" in msg
    assert "Did you mean 'offline-default'?" in msg
    assert "encoders/mert-95m" in msg and "projects/llark/train" in msg
    with pytest.raises(ConfigError, match=r"/nope\.yaml: config file not found"):
        resolve_config_path("/nope.yaml")


def test_musicllm_load_resolves_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``MusicLLM.load`` (behind ``mullm.load`` and every ``--model``) takes shipped names."""
    from mullm.model import MusicLLM

    seen = []
    monkeypatch.setattr(MusicLLM, "__init__", lambda self, cfg: seen.append(cfg) or None)
    monkeypatch.setattr(MusicLLM, "from_pretrained", classmethod(
        lambda cls, d, overrides=None, **kw: seen.append(("dir", d))))
    mullm.load("offline-default", ["llm.policy=frozen"])
    assert seen[-1].llm.policy == "frozen" and seen[-1].modalities["audio"].encoder.name == \
        "spectral"
    MusicLLM.load("quickstart")  # a training config's model section
    assert seen[-1].llm.lora.r == 16
    mullm.load(tmp_path)  # a model directory goes through as given
    assert seen[-1] == ("dir", tmp_path)
    with pytest.raises(ModelLoadError, match=r"'runs/nope' is not a model directory.*Known"):
        mullm.load("runs/nope")


def test_extract_takes_encoder_and_model_names() -> None:
    from mullm.commands.extract import encoder_config_from_file

    spectral = encoder_config_from_file("encoders/spectral")
    assert spectral == encoder_config_from_file(str(ROOT / "configs/encoders/spectral.yaml"))
    assert encoder_config_from_file("offline-default") == spectral  # the model's audio encoder
    assert encoder_config_from_file("mert-95m", ["window_s=10"]).window_s == 10.0


def test_configs_command_lists_and_shows(capsys: pytest.CaptureFixture) -> None:
    from mullm.cli import main

    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "projects/salmonn-style/train" in out and "encoders/mert-330m" in out
    assert main(["configs", "projects/salmonn-style/train"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["modalities"]["audio"]["encoder"]["checkpoint"] == "m-a-p/MERT-v1-330M"
    assert main(["configs", "salmon"]) == 1
    assert "Known names" in capsys.readouterr().err


# ---------------------------------------------------------------------- composition


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_compose_merges_mappings_and_replaces_the_rest(tmp_path: Path) -> None:
    base = _write(tmp_path / "p/base.yaml", {"llm": {"policy": "lora", "lora": {"r": 8,
                                                                               "alpha": 16}},
                                             "modalities": {"audio": {"adapter": {
                                                 "name": "mlp", "pool": "mean",
                                                 "pool_rate_hz": 2.0}}}})
    top = {"preset": str(base), "llm": {"lora": {"r": 4, "target_modules": ["q_proj"]}},
           "modalities": {"audio": {"adapter": {"pool_rate_hz": 1.0}}}}
    before = yaml.safe_dump(top)
    out = compose(top, tmp_path / "top.yaml")
    assert yaml.safe_dump(top) == before  # the input is left alone
    assert out["llm"] == {"policy": "lora",
                          "lora": {"r": 4, "alpha": 16, "target_modules": ["q_proj"]}}
    assert out["modalities"]["audio"]["adapter"] == {"name": "mlp", "pool": "mean",
                                                     "pool_rate_hz": 1.0}


def test_a_mapping_that_names_a_preset_starts_afresh(tmp_path: Path) -> None:
    # The offline default's encoder is the spectral preset; naming another encoder preset
    # must not keep spectral's options on it.
    data = {"preset": "offline-default",
            "modalities": {"audio": {"encoder": {"preset": "encoders/tiny-audio"}}}}
    cfg = load_model_config(_write(tmp_path / "m.yaml", data))
    tiny = from_dict(EncoderConfig, yaml.safe_load(
        resolve_config_path("tiny-audio").read_text()))
    assert cfg.modalities["audio"].encoder == tiny
    # The same swap as a command-line override (overrides apply before presets expand).
    cfg = load_model_config("offline-default",
                            ["modalities.audio.encoder.preset=encoders/tiny-audio"])
    assert cfg.modalities["audio"].encoder == tiny


def test_relative_presets_are_found_beside_the_file_not_in_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "proj/enc.yaml", {"name": "tiny_audio", "hidden_size": 8})
    _write(tmp_path / "enc.yaml", {"name": "spectral"})  # a decoy in the cwd
    top = _write(tmp_path / "proj/model.yaml",
                 {"modalities": {"audio": {"encoder": {"preset": "enc.yaml"}}}})
    monkeypatch.chdir(tmp_path)
    assert load_model_config(top).modalities["audio"].encoder.hidden_size == 8


def test_training_config_built_on_a_training_preset(tmp_path: Path) -> None:
    top = _write(tmp_path / "t.yaml", {"preset": "quickstart",
                                       "stages": {"joint": {"steps": 17}},
                                       "output_dir": str(tmp_path / "run")})
    cfg = load_train_config(top, ["stages.align.steps=6"])
    assert (cfg.stages["align"].steps, cfg.stages["joint"].steps) == (6, 17)
    assert cfg.stages["joint"].lr_groups == {"adapter.audio": 3e-3, "lora": 1e-3}
    # Its model section, with overrides relative to the model.
    model = load_model_config(top, ["llm.policy=frozen"])
    assert model.llm.policy == "frozen" and model.llm.lora.r == 16


def test_preset_errors_name_the_file_the_key_and_the_value(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", {"modalities": {"audio": {"encoder": {
        "preset": "encoders/mert-33m"}}}})
    with pytest.raises(ConfigError, match=r"bad\.yaml: modalities\.audio\.encoder\.preset: "
                                          r"'encoders/mert-33m'.*Did you mean "
                                          r"'encoders/mert-330m'"):
        load_model_config(bad)
    wrong = _write(tmp_path / "wrong.yaml", {"llm": {"preset": ["llms/llama2-7b"]}})
    with pytest.raises(ConfigError, match=r"wrong\.yaml: llm\.preset: expected the name of a "
                                          r"preset.*\['llms/llama2-7b'\]"):
        load_model_config(wrong)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    _write(a, {"preset": str(b)})
    _write(b, {"preset": str(a)})
    with pytest.raises(ConfigError, match=r"names itself through its presets"):
        load_model_config(a)


# -------------------------------------------------------------------- package data


@pytest.mark.slow
def test_wheel_ships_the_configs_and_names_resolve_from_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for part in ("setup.py", "pyproject.toml", "README.md", "mullm", "configs", "projects"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy2
        copy(ROOT / part, src / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / part).is_dir() else {}))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mullm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in _all_yaml():
        assert f"mullm/{path.relative_to(ROOT).as_posix()}" in names, path
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # From an unrelated folder, the installed package finds its own configs by name.
    script = (
        "import mullm, mullm.config as c, mullm.train.config as t\n"
        "from mullm.config_files import config_names\n"
        f"assert mullm.__file__.startswith({str(site)!r}), mullm.__file__\n"
        "for name in ('quickstart', 'offline-default', 'encoders/mert-95m',\n"
        "             'projects/mu-llama/train'):\n"
        f"    assert str(c.resolve_config_path(name)).startswith({str(site)!r}), name\n"
        "for name in config_names():\n"
        "    if name == 'quickstart' or name.startswith('projects/'):\n"
        "        t.load_train_config(name)\n"
        "c.load_model_config('offline-default')\n"
        "print(len(config_names()))\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert int(res.stdout.split()[-1]) == len(_all_yaml())
