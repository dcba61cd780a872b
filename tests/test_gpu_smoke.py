"""benchmarks/gpu_smoke.py runs on the CPU: every injection kind on the cheap encoder
families, one kind on the transformers / open_clip towers, and it exits 1 on a failure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "benchmarks/gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("families,injections", [
    ("tiny_audio,spectral,tiny_image,jukebox", "splice,xattn,prefix"),
    ("clip,vit,open_clip,vivit,clap,mert", "splice"),
])
def test_smoke_passes_on_cpu(families: str, injections: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "smoke.json"
    rc = _script().main(["--device", "cpu", "--families", families, "--injections",
                         injections, "--out", str(out)])
    printed = capsys.readouterr().out
    combos = [(f, i) for f in families.split(",") for i in injections.split(",")]
    assert rc == 0, printed
    for family, injection in combos:
        assert any(line.split()[:3] == [family, injection, "ok"]
                   for line in printed.splitlines()), (family, injection, printed)
    rows = json.loads(out.read_text())["results"]
    assert {(r["family"], r["injection"]) for r in rows} == set(combos)
    assert all(r["status"] == "ok" and len(r["replies"]) == 2 for r in rows)


def test_a_failure_is_printed_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    smoke = _script()
    real = smoke.run_one

    def broken(llm_dir: Path, family: str, injection: str, *args: object) -> dict:
        if injection == "xattn":
            raise RuntimeError("adapter input is on cuda:0, mask on cpu")
        return real(llm_dir, family, injection, *args)

    monkeypatch.setattr(smoke, "run_one", broken)
    rc = smoke.main(["--device", "cpu", "--families", "tiny_audio", "--injections",
                     "splice,xattn", "--out", str(tmp_path / "s.json")])
    printed = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert any(line.split()[:3] == ["tiny_audio", "splice", "ok"] for line in printed)
    assert any(line.split()[:3] == ["tiny_audio", "xattn", "FAIL"]
               and "mask on cpu" in line for line in printed)
    assert printed[-1].startswith("1/2 combinations passed")


def test_unknown_family_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown \\['wav2vec'\\]"):
        _script().main(["--device", "cpu", "--families", "wav2vec"])
