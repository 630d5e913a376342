"""``bench/engine.py --smoke``: the engine benchmark runs end to end on a CPU and writes its results file."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine.py"


def test_smoke_benchmark_writes_both_contenders_and_parity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import torch

    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    out = tmp_path / "engine.md"
    assert module.main(["--smoke", "--repeats", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| img2vid LocalEngine |" in text and "| diffusers StableVideoDiffusionPipeline |" in text
    difference = re.search(r"frames \(fp32, same seed\): (\d+)/255", text)
    assert difference is not None and int(difference.group(1)) <= 1
    if not torch.cuda.is_available():
        assert "No CUDA GPU was available" in text


def test_the_reported_decode_chunk_is_the_one_used_even_when_chunks_are_uneven(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.decode_chunk_of(["decoding frames 1-14/25", "decoding frames 15-25/25"]) == 14
    assert module.decode_chunk_of(["decoding frames 1-25/25"]) == 25
