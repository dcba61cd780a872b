"""Config loading: strict keys and types, overrides, impossible combinations, every YAML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import tiny_model_dict

from mullm.config import (
    AdapterConfig,
    EncoderConfig,
    ModelConfig,
    apply_overrides,
    from_dict,
    load_model_config,
    validate_adapter,
    validate_encoder,
)
from mullm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_key_names_key_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'llm.polcy'.*did you mean 'policy'"):
        load_model_config({"llm": {"polcy": "lora"}})


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"modalities.audio.adapter.num_queries.*'many'"):
        load_model_config({"modalities": {"audio": {"adapter": {"num_queries": "many"}}}})


def test_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"'qformr'.*did you mean 'qformer'"):
        load_model_config({"modalities": {"audio": {"adapter": {"name": "qformr"}}}})


def test_overrides_are_typed_and_strict() -> None:
    data = apply_overrides({}, ["modalities.audio.adapter.name=qformer",
                                "modalities.audio.adapter.num_queries=8", "llm.policy=lora"])
    cfg = load_model_config(data)
    assert cfg.modalities["audio"].adapter.num_queries == 8 and cfg.llm.policy == "lora"
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides({}, ["llm.policy"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_model_config(apply_overrides({}, ["llm.nope=1"]))


def test_qformer_with_zero_queries() -> None:
    with pytest.raises(ConfigError, match=r"num_queries=0.*at least 1 query"):
        load_model_config({"modalities": {"audio": {"adapter": {"name": "qformer",
                                                                  "num_queries": 0}}}})


def test_window_larger_than_clip_budget() -> None:
    cfg = {"modalities": {"audio": {
        "encoder": {"name": "spectral", "frame_rate": 25.0, "max_duration_s": 2.0},
        "adapter": {"name": "window_qformer", "window_frames": 100, "hidden_size": 64}}}}
    with pytest.raises(ConfigError, match=r"window_frames=100.*larger than the clip budget"):
        load_model_config(cfg)


def test_prefix_on_more_layers_than_llm(tiny_llm_dir: Path) -> None:
    from mullm.model import MusicLLM

    data = tiny_model_dict(tiny_llm_dir, "qformer", "prefix")
    data["modalities"]["audio"]["injection"]["top_k_layers"] = 40
    with pytest.raises(ConfigError, match=r"top_k_layers=40.*more layers than the LLM has \(4\)"):
        MusicLLM(load_model_config(data))
    data["modalities"]["audio"]["injection"].update(top_k_layers=None, layers=[2, 3, 9])
    with pytest.raises(ConfigError, match=r"layers \[9\] do not exist"):
        MusicLLM(load_model_config(data))


def test_lora_targets_that_match_nothing(tiny_llm_dir: Path) -> None:
    from mullm.model import MusicLLM

    data = tiny_model_dict(tiny_llm_dir)
    data["llm"]["lora"]["target_modules"] = ["query_key_value"]
    with pytest.raises(ConfigError, match=r"query_key_value.*match no module.*q_proj"):
        MusicLLM(load_model_config(data))


def test_prefix_needs_fixed_token_count() -> None:
    cfg = {"modalities": {"audio": {"adapter": {"name": "mlp"},
                                    "injection": {"kind": "prefix", "top_k_layers": 2}}}}
    with pytest.raises(ConfigError, match="fixed token count"):
        load_model_config(cfg)


def test_quantised_full_finetune_refused() -> None:
    with pytest.raises(ConfigError, match="quantised LLM cannot be fully fine-tuned"):
        load_model_config({"llm": {"policy": "full", "quantization": "4bit"}})


def _yaml_files() -> list[Path]:
    files = []
    for folder in ("configs", "projects"):
        files += sorted((ROOT / folder).rglob("*.yaml"))
    return files


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_in_repo_validates(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    rel = path.relative_to(ROOT).parts
    if rel[:2] == ("configs", "encoders"):
        validate_encoder(from_dict(EncoderConfig, data))
    elif rel[:2] == ("configs", "adapters"):
        validate_adapter(from_dict(AdapterConfig, data))
    elif "model" in data or "llm" in data or "modalities" in data:
        if "model" in data and ("train" in data or "stages" in data or "data" in data):
            from mullm.train.config import load_train_config

            load_train_config(path)
        else:
            assert isinstance(load_model_config(path), ModelConfig)
    else:
        pytest.fail(f"{path}: not an encoder, adapter, model or training config")


def test_overrides_leave_the_callers_mapping_alone() -> None:
    data = {"modalities": {"audio": {"adapter": {"name": "mlp"}}}}
    cfg = load_model_config(data, ["modalities.audio.adapter.name=linear"])
    assert cfg.modalities["audio"].adapter.name == "linear"
    assert data["modalities"]["audio"]["adapter"]["name"] == "mlp"


def test_encoder_trust_remote_code_is_gone() -> None:
    assert "trust_remote_code" not in {f.name for f in dataclasses.fields(EncoderConfig)}
    enc = {"name": "mert", "checkpoint": "m-a-p/MERT-v1-95M"}
    with pytest.raises(ConfigError, match=r"modalities\.audio\.encoder\.trust_remote_code=True: "
                                          r"this key was removed: no encoder runs remote code"):
        load_model_config({"modalities": {"audio": {"encoder": {**enc,
                                                                "trust_remote_code": True}}}})
    # Model directories saved before the removal wrote `false`: they still load.
    cfg = load_model_config({"modalities": {"audio": {"encoder": {**enc,
                                                                  "trust_remote_code": False}}}})
    assert cfg.modalities["audio"].encoder.checkpoint == "m-a-p/MERT-v1-95M"
