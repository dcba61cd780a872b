"""Config loading: strict keys and types, overrides, impossible combinations.

Every shipped YAML, names and presets: tests/test_projects_config.py."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
from conftest import tiny_model_dict

from mullm.config import EncoderConfig, apply_overrides, load_model_config
from mullm.errors import ConfigError
from mullm.train.config import load_train_config


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


def test_overrides_leave_the_callers_mapping_alone() -> None:
    data = {"modalities": {"audio": {"adapter": {"name": "mlp"}}}}
    cfg = load_model_config(data, ["modalities.audio.adapter.name=linear"])
    assert cfg.modalities["audio"].adapter.name == "linear"
    assert data["modalities"]["audio"]["adapter"]["name"] == "mlp"


# A training config small enough to load: one source, the default stage.
TRAIN = {"data": {"train": {"a": {"path": "a.jsonl"}}},
         "model": {"modalities": {"audio": {"encoder": {"name": "spectral",
                                                        "options": {"n_mels": 32}}}}}}


def test_override_numbers_are_read_as_people_write_them() -> None:
    cfg = load_train_config(TRAIN, ["stages.main.lr=1e-4", "stages.main.min_lr_ratio=5E-2",
                                    "stages.main.lr_groups={lora: 2e-4, adapter.audio: 3E-3}",
                                    "stages.main.steps=1_000", "stages.main.warmup_steps=1e2",
                                    "train.max_grad_norm=1e0"])
    main = cfg.stages["main"]
    assert (main.lr, main.min_lr_ratio, main.steps, main.warmup_steps) == (1e-4, 0.05, 1000, 100)
    assert main.lr_groups == {"lora": 2e-4, "adapter.audio": 3e-3}
    assert isinstance(main.lr, float) and isinstance(main.steps, int)
    assert cfg.train.max_grad_norm == 1.0
    # Not numbers: refused with the key and the value, never read as something else.
    for override, expected in [("stages.main.lr=1e", "a number"), ("stages.main.lr=1.2.3",
                               "a number"), ("stages.main.steps=1.5", "an integer"),
                               ("stages.main.steps=1e-3", "an integer"),
                               ("stages.main.lr=nan", "a number")]:
        key, value = override.split("=")
        with pytest.raises(ConfigError, match=rf"{key}: expected {expected}, got '?{value}'?"):
            load_train_config(TRAIN, [override])


def test_string_overrides_keep_their_text() -> None:
    cfg = load_train_config(TRAIN, ["model.llm.revision=1.10", "output_dir=2024-01-01",
                                    "model.system_prompt=1e5", "model.llm.chat_template=null",
                                    "data.train.a.path='quoted.jsonl'"])
    assert cfg.model.llm.revision == "1.10"  # not the float 1.1
    assert cfg.output_dir == "2024-01-01"    # not a date
    assert cfg.model.system_prompt == "1e5" and cfg.model.llm.chat_template is None
    assert cfg.data.train["a"].path == "quoted.jsonl"
    # YAML files read numbers the same way.
    model = load_model_config({"llm": {"name_or_path": "x"},
                               "modalities": {"audio": {"adapter": {"pool": "mean",
                                                                    "pool_rate_hz": "2e0"}}}})
    assert model.modalities["audio"].adapter.pool_rate_hz == 2.0


def test_yaml_file_with_exponent_floats(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("data: {train: {a: {path: a.jsonl}}}\n"
                    "stages: {main: {lr: 3e-5, steps: 10, lr_groups: {lora: 1E-4}}}\n")
    cfg = load_train_config(path)
    assert cfg.stages["main"].lr == 3e-5 and cfg.stages["main"].lr_groups == {"lora": 1e-4}


def test_loaders_leave_the_callers_nested_data_alone() -> None:
    data = copy.deepcopy(TRAIN)
    cfg = load_train_config(data, ["model.modalities.audio.encoder.options.n_mels=16",
                                   "data.train.a.weight=2"])
    assert data == TRAIN  # nested mappings untouched
    assert cfg.model.modalities["audio"].encoder.options == {"n_mels": 16}
    cfg.model.modalities["audio"].encoder.options["n_fft"] = 512  # no shared objects either
    assert data == TRAIN
    model = copy.deepcopy(TRAIN["model"])
    load_model_config(model, ["modalities.audio.encoder.options.n_mels=8"]).modalities[
        "audio"].encoder.options["n_fft"] = 512
    assert model == TRAIN["model"]
    assert apply_overrides(model, ["llm.policy=full"]) is not model and "llm" not in model


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
