"""``bench/engine.py``: the smoke form runs end to end on a CPU and writes its JSON and table; its pieces
(PSNR, ratios, verdicts) compute what the results file claims."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("diffusers")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine.py"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_benchmark_measures_modes_against_diffusers_and_records_refusals(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    # The bench points the compile caches at its own temporary folder; keep the test's process clean.
    monkeypatch.setenv("IMG2VID_COMPILE_CACHE", str(tmp_path / "cc"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    out = tmp_path / "smoke.json"
    assert bench.main(["--smoke", "--modes", "diffusers-fp16,eager,low,fp8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    results = {r["mode"]: r for r in report["results"]}
    assert set(results) == {"diffusers-fp16", "eager", "low", "fp8"}
    for mode in ("diffusers-fp16", "eager", "low"):
        assert results[mode]["status"] == "ok" and results[mode]["clip_s"] > 0 and results[mode]["step_s"] > 0
    assert results["diffusers-fp16"]["speedup"] == pytest.approx(1.0)
    assert results["eager"]["settings"]["speed"] == "eager" and results["low"]["settings"]["low_memory"] is True
    # Same seed, same fp32 model: diffusers' frames are within 1/255 of eager's, so the PSNR is high.
    assert results["diffusers-fp16"]["psnr_vs_eager_db"] is None or results["diffusers-fp16"]["psnr_vs_eager_db"] > 40
    if not torch.cuda.is_available():
        assert results["fp8"]["status"].startswith("skipped:") and "8.9" in results["fp8"]["status"]
    table = out.with_suffix(".md").read_text()
    assert "| eager | ok |" in table and "| fp8 | skipped:" in table


def test_psnr_is_infinite_for_equal_frames_and_falls_with_the_error(bench: ModuleType) -> None:
    frames = np.full((2, 4, 4, 3), 100, dtype=np.uint8)
    assert math.isinf(bench.psnr(frames, frames))
    off_by_one = bench.psnr(frames, frames + 1)
    assert off_by_one == pytest.approx(20 * math.log10(255), abs=1e-9)  # MSE of 1
    assert bench.psnr(frames, frames + 10) < off_by_one


def test_ratios_psnr_and_verdicts_come_from_the_same_run(bench: ModuleType) -> None:
    frames = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    reference = bench.Result(mode="diffusers-fp16", clip_s=20.0, frames=frames)
    eager = bench.Result(mode="eager", clip_s=19.0, frames=frames)
    compiled = bench.Result(mode="compiled", clip_s=10.0, frames=frames + 1)
    low = bench.Result(mode="low", clip_s=30.0, peak_gib=9.5, frames=frames)
    fp8 = bench.Result(mode="fp8", status="skipped: needs 8.9")
    fast = bench.Result(mode="fast", clip_s=5.0, frames=frames + 3)
    results = [reference, eager, compiled, low, fp8, fast]
    bench.finish(results)
    assert fast.psnr_vs_compiled_db == pytest.approx(20 * math.log10(255 / 2), abs=0.01)  # off by 2 levels
    assert compiled.speedup == pytest.approx(2.0) and compiled.psnr_vs_eager_db == pytest.approx(48.13, abs=0.01)
    assert fp8.speedup is None
    lines = bench.verdicts(results)
    assert "compiled: 2.00x diffusers fp16 (target 1.5x): met" in lines
    assert "low peak 9.5 GiB (target 8): NOT met" in lines
    assert "fast: 4.00x diffusers fp16 (target 2.5x): met" in lines


def test_results_file_is_named_after_the_gpu(bench: ModuleType) -> None:
    assert bench.slug("NVIDIA H200") == "nvidia-h200"
    assert bench.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
