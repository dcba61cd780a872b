"""Adapters: token counts, masks, padding invariance, gradients, training, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from mullm.adapters import ADAPTERS, Adapter, build_adapter
from mullm.adapters.pooling import pool_group, temporal_pool
from mullm.adapters.window_qformer import num_windows
from mullm.config import AdapterConfig, from_dict, validate_adapter
from mullm.errors import ConfigError

IN_DIM, OUT_DIM, FRAME_RATE = 6, 10, 20.0
PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "adapters").glob("*.yaml"))

TINY = {"hidden_size": 16, "num_heads": 2, "num_layers": 2, "num_queries": 3, "window_frames": 4}
POOLS = {
    "none": {"pool": "none"},
    "mean3": {"pool": "mean", "pool_frames": 3},
    "max3": {"pool": "max", "pool_frames": 3},
    "rate": {"pool": "mean", "pool_rate_hz": 10.0},  # 20 Hz -> groups of 2
    "global": {"pool": "global"},
}
EXTRA = {
    "mlp-swiglu": {"name": "mlp", "mlp_style": "swiglu", "num_layers": 3},
    "mlp-1layer": {"name": "mlp", "num_layers": 1},
    "qformer-cross2": {"name": "qformer", "num_layers": 3, "cross_attention_every": 2},
    "window-overlap-2q": {"name": "window_qformer", "window_stride": 2, "queries_per_window": 2},
    "window-1frame": {"name": "window_qformer", "window_frames": 1},
}
CASES = {f"{name}-{pool}": dict(TINY, name=name, **kw)
         for name in ADAPTERS for pool, kw in POOLS.items()}
CASES.update({case: dict(TINY, **kw) for case, kw in EXTRA.items()})
CASES.update({f"{case}-mean3": dict(TINY, **EXTRA[case], **POOLS["mean3"])
              for case in ("mlp-swiglu", "window-overlap-2q")})
# Clip-summary tokens in front, on every adapter kind (the generic tests cover them too).
CASES.update({f"{name}-mean3-global2": dict(TINY, name=name, global_tokens=2, **POOLS["mean3"])
              for name in ADAPTERS})


def make(case: str | dict, seed: int = 0) -> Adapter:
    """Build a tiny adapter from a case name or config kwargs under a fixed seed."""
    kwargs = CASES[case] if isinstance(case, str) else case
    torch.manual_seed(seed)
    return build_adapter(AdapterConfig(**kwargs), IN_DIM, OUT_DIM, FRAME_RATE)


def batch(lengths: list[int], total: int | None = None, seed: int = 1
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random frames with their mask."""
    total = total or max(lengths)
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), total, IN_DIM, generator=gen)
    mask = torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]
    return feats, mask


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_counts_and_left_aligned_mask(case: str) -> None:
    adapter = make(case).eval()
    lengths = [13, 7, 1, 4]
    feats, mask = batch(lengths)
    tokens, token_mask = adapter(feats, mask)
    expected = [adapter.num_tokens(n) for n in lengths]
    assert tokens.shape == (4, token_mask.shape[1], OUT_DIM)
    assert token_mask.dtype == torch.bool
    assert token_mask.sum(1).tolist() == expected
    assert token_mask.shape[1] == max(expected)
    aligned = torch.arange(token_mask.shape[1])[None, :] < torch.tensor(expected)[:, None]
    assert torch.equal(token_mask, aligned)
    assert torch.isfinite(tokens).all()
    assert (tokens[~token_mask] == 0).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_padding_invariance(case: str) -> None:
    adapter = make(case).eval()
    feats, mask = batch([13, 7])
    alone_feats, alone_mask = feats[1:, :7], mask[1:, :7]
    with torch.no_grad():
        batched, batched_mask = adapter(feats, mask)
        alone, alone_token_mask = adapter(alone_feats, alone_mask)
    n = int(alone_token_mask.sum())
    assert int(batched_mask[1].sum()) == n
    torch.testing.assert_close(batched[1, :n], alone[0, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_padded_frames_never_leak(case: str) -> None:
    adapter = make(case).eval()
    feats, mask = batch([13, 7, 2])
    garbage = feats.clone()
    garbage[~mask] = torch.randn(int((~mask).sum()), IN_DIM) * 1e4
    garbage[1, 10] = float("nan")
    garbage[2, 5] = float("inf")
    with torch.no_grad():
        clean, clean_mask = adapter(feats, mask)
        dirty, dirty_mask = adapter(garbage, mask)
    assert torch.equal(clean_mask, dirty_mask)
    torch.testing.assert_close(dirty, clean, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_left_padding_equals_right_padding(case: str) -> None:
    adapter = make(case).eval()
    feats, mask = batch([9, 5])
    left_feats = feats.clone()
    left_feats[1] = torch.cat([feats[1, 5:], feats[1, :5]])  # 4 pad frames, then the clip
    left_mask = torch.stack([mask[0], torch.arange(9) >= 4])
    with torch.no_grad():
        right, right_mask = adapter(feats, mask)
        left, left_mask_out = adapter(left_feats, left_mask)
    assert torch.equal(right_mask, left_mask_out)
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_reach_every_parameter(case: str) -> None:
    adapter = make(case).train()
    feats, mask = batch([13, 7, 3])
    tokens, token_mask = adapter(feats, mask)
    weights = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(3))
    (tokens * weights)[token_mask].sum().backward()
    cfg = adapter.config
    # Cross-attention to a single frame returns that frame's value whatever the query, so
    # the norm on the query side cannot matter (a property of attention, not a bug).
    one_key = cfg.name in ("qformer", "window_qformer") and (
        cfg.pool == "global" or (cfg.name == "window_qformer" and cfg.window_frames == 1))
    missing = [name for name, p in adapter.named_parameters()
               if (p.grad is None or not p.grad.abs().sum() > 0)
               and not (one_key and ".cross_norm." in name)]
    assert not missing, f"no gradient reached {missing}"
    for name, p in adapter.named_parameters():
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.endswith("-none") or c in EXTRA))
def test_few_adam_steps_lower_the_loss(case: str) -> None:
    adapter = make(case).train()
    feats, mask = batch([12, 8, 5])
    with torch.no_grad():
        _, token_mask = adapter(feats, mask)
    target = torch.randn(*token_mask.shape, OUT_DIM, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        tokens, token_mask = adapter(feats, mask)
        loss = (tokens - target)[token_mask].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_seeded_builds_are_identical() -> None:
    for case in ("qformer-none", "window_qformer-none", "perceiver-none", "mlp-swiglu"):
        a, b = make(case, seed=5).state_dict(), make(case, seed=5).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), case


def test_unknown_name_lists_known_adapters() -> None:
    config = AdapterConfig(name="resampler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resampler") as info:
        build_adapter(config, IN_DIM, OUT_DIM, FRAME_RATE)
    for name in ADAPTERS:
        assert name in str(info.value)


def test_registry_names() -> None:
    assert set(ADAPTERS) == {"linear", "mlp", "qformer", "window_qformer", "perceiver"}
    assert all(issubclass(cls, Adapter) for cls in ADAPTERS.values())


def test_window_qformer_tokens_grow_with_length() -> None:
    adapter = make(dict(TINY, name="window_qformer", window_frames=4, queries_per_window=2))
    counts = [adapter.num_tokens(n) for n in (1, 4, 5, 8, 9, 17)]
    assert counts == [2, 2, 4, 4, 6, 10]
    feats, mask = batch([17, 9, 5, 1])
    _, token_mask = adapter.eval()(feats, mask)
    assert token_mask.sum(1).tolist() == [10, 6, 4, 2]


@pytest.mark.parametrize("window,stride", [(4, 4), (4, 2), (4, 1), (17, 17), (5, 3)])
def test_windows_cover_every_frame_and_none_is_padding(window: int, stride: int) -> None:
    for n in range(1, 40):
        count = num_windows(n, window, stride)
        starts = [i * stride for i in range(count)]
        covered = {f for s in starts for f in range(s, s + window)}
        assert set(range(n)) <= covered
        assert all(s < n for s in starts)
        assert count == 1 or starts[-2] + window < n  # the last window is needed


def test_salmonn_preset_count_for_30_s() -> None:
    cfg = AdapterConfig(name="window_qformer", window_frames=17, queries_per_window=1,
                        hidden_size=16, num_heads=2)
    adapter = build_adapter(cfg, IN_DIM, OUT_DIM, 50.0)
    assert adapter.num_tokens(1500) == 89  # 88 full windows + one partial


def test_window_stride_larger_than_window_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        make(dict(TINY, name="window_qformer", window_frames=4, window_stride=5))


def test_global_pool_gives_one_token() -> None:
    for name in ("linear", "mlp"):
        adapter = make(dict(TINY, name=name, pool="global")).eval()
        feats, mask = batch([11, 3])
        tokens, token_mask = adapter(feats, mask)
        assert tokens.shape == (2, 1, OUT_DIM)
        assert token_mask.all()
        assert adapter.num_tokens(1) == adapter.num_tokens(10_000) == 1


def test_global_tokens_summarise_valid_frames_only() -> None:
    """The summary tokens come first and are the MLP of the valid frames' mean and std."""
    ad = make("mlp-mean3-global2")
    feats, mask = batch([5, 9])
    tokens, token_mask = ad(feats, mask)
    assert ad.num_tokens(5) == 2 + 2 and int(token_mask[0].sum()) == 4
    clip = feats[0, :5]
    stats = torch.cat([clip.mean(0), clip.std(0, unbiased=False)])
    expected = ad.summary.net(stats).view(2, OUT_DIM)
    torch.testing.assert_close(tokens[0, :2], expected)
    assert torch.equal(token_mask[:, :2], torch.ones(2, 2, dtype=torch.bool))
    constant = torch.ones(1, 6, IN_DIM, requires_grad=True)  # zero variance: silence
    ad(constant, torch.ones(1, 6, dtype=torch.bool))[0].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in ad.parameters() if p.grad is not None)
    assert torch.isfinite(constant.grad).all()


def test_negative_global_tokens_is_refused() -> None:
    """global_tokens < 0 is named in the error."""
    with pytest.raises(ConfigError, match="global_tokens"):
        validate_adapter(AdapterConfig(global_tokens=-1))


def test_pool_rate_hz_group_size() -> None:
    cfg = AdapterConfig(name="linear", pool="mean", pool_rate_hz=10.0)
    assert pool_group(cfg, 75.0) == 8  # 7.5 rounds up
    assert pool_group(cfg, 65.0) == 7  # 6.5 rounds up too, not to even
    assert pool_group(cfg, 5.0) == 1  # never below one frame
    adapter = build_adapter(cfg, IN_DIM, OUT_DIM, 75.0)
    assert adapter.num_tokens(75 * 3) == 29  # ceil(225 / 8)
    feats = torch.randn(2, 20, IN_DIM)
    mask = torch.arange(20)[None, :] < torch.tensor([[20], [8]])
    _, token_mask = adapter(feats, mask)
    assert token_mask.sum(1).tolist() == [3, 1]


def test_pooling_values() -> None:
    feats = torch.arange(7.0)[None, :, None].repeat(1, 1, 2)
    mask = torch.arange(7)[None, :] < 5  # frames 0..4 valid
    mean, mean_mask = temporal_pool(feats, mask, "mean", 2)
    assert mean[0, :, 0].tolist() == [0.5, 2.5, 4.0, 0.0]
    assert mean_mask[0].tolist() == [True, True, True, False]
    mx, _ = temporal_pool(feats, mask, "max", 3)
    assert mx[0, :, 0].tolist() == [2.0, 4.0, 0.0]
    glob, glob_mask = temporal_pool(feats, mask, "global", 1)
    assert glob[0, :, 0].tolist() == [2.0] and glob_mask.tolist() == [[True]]


def test_bad_inputs_are_refused() -> None:
    adapter = make("linear-none")
    with pytest.raises(ValueError, match="no valid frames"):
        adapter(torch.randn(2, 4, IN_DIM), torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(ValueError, match="feats must be"):
        adapter(torch.randn(2, 4, IN_DIM + 1), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be bool"):
        adapter(torch.randn(2, 4, IN_DIM), torch.ones(2, 4))
    with pytest.raises(ValueError, match="at least one valid frame"):
        adapter.num_tokens(0)


def test_presets_exist() -> None:
    names = {p.stem for p in PRESETS}
    assert {"mu-llama-mlp", "musilingo-linear", "salmonn-window-qformer", "blip2-qformer",
            "flamingo-perceiver"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_validates_and_builds(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), f"{path.name} must start with a comment naming its system"
    config = from_dict(AdapterConfig, yaml.safe_load(text))
    validate_adapter(config)
    # Full size on the meta device: checks construction without allocating the weights.
    with torch.device("meta"):
        full = build_adapter(config, 1024, 576, 75.0)
    assert full.num_tokens(75 * 30) >= 1
    # A shrunk copy runs for real: same family, pooling and windowing, tiny widths.
    small_cfg = dataclasses.replace(config, hidden_size=4 * config.num_heads,
                                    num_layers=min(config.num_layers, 2),
                                    cross_attention_every=1)
    small = build_adapter(small_cfg, IN_DIM, OUT_DIM, 75.0).eval()
    feats, mask = batch([700, 40], total=700)
    _, token_mask = small(feats, mask)
    assert token_mask.sum(1).tolist() == [full.num_tokens(700), full.num_tokens(40)]
