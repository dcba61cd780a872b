"""Probes (mullm.eval.probe) read a signal whatever its scale; the shipped corpus definitions
render once into the cache and a smaller size reuses the finished corpus's first clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mullm.data import corpora
from mullm.eval.probe import clip_statistics, linear_probe, mlp_probe


def _data(seed: int, n: int = 400) -> tuple[np.ndarray, list[str]]:
    # The label lives in one dimension of scale 0.01 beside 20 of scale 1: only a probe that
    # standardises its inputs reads it at once.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 21))
    x[:, 0] = 0.01 * (y * 2 - 1 + 0.3 * rng.normal(size=n))
    return x, ["major" if v else "minor" for v in y]


@pytest.mark.parametrize("probe", [linear_probe, mlp_probe])
def test_probe_reads_a_small_scale_signal_and_not_shuffled_labels(probe: object) -> None:
    x_tr, y_tr = _data(0)
    x_te, y_te = _data(1)
    assert probe(x_tr, y_tr, x_te, y_te) > 0.95
    shuffled = list(np.random.default_rng(2).permutation(y_tr))
    assert abs(probe(x_tr, shuffled, x_te, y_te) - 0.5) < 0.12


def test_clip_statistics_is_mean_then_std_over_time() -> None:
    frames = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert clip_statistics(frames).tolist() == [2.0, 0.0, 1.0, 0.0]
    assert clip_statistics(frames[:1]).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_a_smaller_size_reuses_the_finished_corpus(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import fluidsynth  # noqa: F401 - a missing dependency must fail, not skip

    monkeypatch.setenv("MULLM_CACHE", str(tmp_path))
    monkeypatch.setitem(corpora.CORPORA, "mini", {
        "n": 4, "seed": 2, "min_s": 2.0, "max_s": 3.0, "music21_fraction": 0.0,
        "single_family_fraction": 0.5, "balanced": True, "instrument_set": "train"})
    full = corpora.ensure_corpus("mini", progress=False, workers=1)
    assert full.parent == tmp_path / "corpora" / "mini"
    rows = [json.loads(x) for x in full.read_text().splitlines()]
    assert len(rows) == 4
    small = corpora.ensure_corpus("mini", 2, progress=False, workers=1)
    assert small.parent == tmp_path / "corpora" / "mini-2"
    part = [json.loads(x) for x in small.read_text().splitlines()]
    # the first clips of the plan, their audio where the full corpus rendered it
    assert [r["id"] for r in part] == ["clip00000", "clip00001"]
    assert all(Path(r["audio"]).is_file() and Path(r["audio"]).parent.parent == full.parent
               for r in part)
    assert not (small.parent / "audio").exists()
    with pytest.raises(ValueError, match="unknown corpus 'nope'"):
        corpora.ensure_corpus("nope")
