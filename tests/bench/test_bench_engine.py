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


def test_family_smoke_benchmark_runs_the_pipeline_class_and_the_engine_on_the_tiny_model(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("IMG2VID_COMPILE_CACHE", str(tmp_path / "cc"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    out = tmp_path / "smoke-wan.json"
    argv = ["--smoke", "--family", "wan2.2-ti2v-5b", "--modes", "diffusers,eager,fp8", "--warm-start", "", "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["setup"]["family"] == "wan2.2-ti2v-5b" and report["setup"]["prompt"] == bench.PROMPT
    assert (report["setup"]["width"], report["setup"]["height"], report["setup"]["frames"], report["setup"]["steps"]) == bench.FAMILY_SMOKE
    results = {r["mode"]: r for r in report["results"]}
    assert list(results) == ["diffusers-bf16", "eager", "fp8"]  # "diffusers" names the family's reference
    for mode in ("diffusers-bf16", "eager"):
        assert results[mode]["status"] == "ok" and results[mode]["clip_s"] > 0 and results[mode]["step_s"] > 0
        assert results[mode]["decode_s"] > 0 and results[mode]["cold_start_s"] > 0
    assert results["diffusers-bf16"]["settings"]["pipeline"] == "WanImageToVideoPipeline"
    assert results["eager"]["settings"]["speed"] == "eager" and results["eager"]["speedup"] > 0
    # The same tiny weights, seed and fp32 arithmetic: the engine's frames are diffusers' within 1/255.
    assert results["diffusers-bf16"]["psnr_vs_eager_db"] is None or results["diffusers-bf16"]["psnr_vs_eager_db"] > 40
    if not torch.cuda.is_available():
        assert results["fp8"]["status"].startswith("skipped:")
    table = out.with_suffix(".md").read_text()
    assert "Wan 2.2 TI2V-5B" in table and "| eager | ok |" in table and "x diffusers per step" in table
    assert any(line.startswith("eager: ") and "x diffusers' pipeline per clip" in line for line in report["verdicts"])


def test_family_options_name_the_runs_and_refuse_unknown_names(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench._modes_for("ltx-video", ["diffusers", "eager"]) == (["diffusers-bf16", "eager"], [])
    assert bench._modes_for("svd", ["diffusers-bf16", "fast"]) == (["diffusers-fp16", "fast"], [])
    assert bench._modes_for("wan2.2-ti2v-5b", ["turbo"])[1] == ["turbo"]
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--family", "wan9"])
    assert "unknown family wan9" in capsys.readouterr().err
    from img2vid.families import FAMILIES

    wan = bench.family_setup(FAMILIES["wan2.2-ti2v-5b"], smoke=False, steps=None)
    ltx = bench.family_setup(FAMILIES["ltx-video"], smoke=False, steps=8)
    assert (wan.width, wan.height, wan.frames, wan.steps, wan.fps) == (1280, 704, 121, 50, 24)
    assert (ltx.width, ltx.height, ltx.frames, ltx.steps, ltx.fps) == (704, 480, 121, 8, 25)


def test_family_verdicts_give_per_step_ratios_and_the_clip_at_the_default_steps(bench: ModuleType) -> None:
    setup = bench.FamilySetup(width=704, height=480, frames=121, steps=10, family="ltx-video")
    reference = bench.Result(mode="diffusers-bf16", clip_s=30.0, step_s=2.0, decode_s=8.0, peak_gib=20.0)
    eager = bench.Result(mode="eager", clip_s=25.0, step_s=1.6, decode_s=7.0, peak_gib=18.0)
    low = bench.Result(mode="low", clip_s=60.0, step_s=4.0, decode_s=10.0, peak_gib=6.5)
    results = [reference, eager, low]
    bench.finish(results)
    lines = bench.family_verdicts(results, setup, default_steps=50)
    assert "eager: 1.20x diffusers' pipeline per clip, 1.25x per denoising step" in lines
    assert "low peak 6.5 GiB (eager: 18.0 GiB)" in lines
    assert "eager: about 89 s per 50-step clip (from 10 measured steps)" in lines  # 25 + 40 x 1.6
    assert "| eager | ok | 25.00 | 1.20 | 1.600 | 1.25 |" in bench.family_table(results)
