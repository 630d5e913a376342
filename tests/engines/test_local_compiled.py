"""The compiled speed modes on the CPU: inductor (with the system's C++ compiler) compiles the tiny model's
blocks once for the whole session, and the compiled frames must match eager ones.

Tolerance: compiled code may reorder float32 sums, so frames may differ from eager ones by at most 2 of
255 levels anywhere and 0.05 levels on average (after 2 denoising steps and the decode). A cold compile of
the tiny model takes minutes on a small shared CPU, hence the ``slow`` marker; compiled artefacts go to a
temporary folder, never to the user's cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from img2vid import VideoRequest  # noqa: E402
from img2vid.engines.local import LocalEngine  # noqa: E402
from img2vid.engines.local.compiling import regions_of  # noqa: E402
from support.local import HEIGHT, WIDTH, small_image  # noqa: E402

pytestmark = pytest.mark.slow

MAX_LEVELS = 2
MAX_MEAN_LEVELS = 0.05


class Compiled:
    """The session's compiled tiny engine, where its artefacts went, and how long compiling took."""

    def __init__(self, engine: LocalEngine, folder: Path, load_seconds: float) -> None:
        self.engine, self.folder, self.load_seconds = engine, folder, load_seconds


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compiled]:
    folder = tmp_path_factory.mktemp("compile")
    with pytest.MonkeyPatch.context() as patch:
        # Both torch's own cache and img2vid's artefact files live in the test's temporary folder.
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
        patch.setenv("IMG2VID_COMPILE_CACHE", str(folder / "img2vid"))
        engine = LocalEngine("tiny", device="cpu", speed="compiled", warm_up=(WIDTH, HEIGHT))
        started = time.perf_counter()
        engine.load()  # compiles in a warm-up run at the tests' size
        yield Compiled(engine, folder, time.perf_counter() - started)


def _request(seed: int = 21) -> VideoRequest:
    return VideoRequest(image=small_image(2), seed=seed, frames=2, steps=2, cfg_scale=2.5)


def test_compiled_frames_match_eager_within_the_stated_tolerance(compiled: Compiled) -> None:
    ours = compiled.engine.generate(_request())
    eager = LocalEngine("tiny", device="cpu", speed="eager").generate(_request())
    difference = np.abs(ours.frames.astype(np.int16) - eager.frames.astype(np.int16))
    assert difference.max() <= MAX_LEVELS and difference.mean() <= MAX_MEAN_LEVELS
    assert ours.frames.std() > 5  # not trivially equal frames
    assert ours.engine_settings["speed"] == "compiled" and ours.engine_settings["compiled"] is True
    print(f"compiled tiny: load with compile {compiled.load_seconds:.0f} s; max difference {difference.max()}/255")


def test_compiling_marks_the_blocks_and_load_compiled_before_the_first_job(compiled: Compiled) -> None:
    parts = compiled.engine.components()
    assert all(getattr(block, "_compiled_call_impl", None) is not None for block in regions_of(parts.unet))
    assert all(getattr(block, "_compiled_call_impl", None) is not None for block in regions_of(parts.vae.decoder))
    # A job at the warm-up size compiles nothing new: it runs in far less time than the compile took.
    started = time.perf_counter()
    compiled.engine.generate(_request(seed=3))
    assert time.perf_counter() - started < compiled.load_seconds


def test_compile_artefacts_are_saved_in_the_configured_folder_keyed_by_model_and_torch(compiled: Compiled) -> None:
    cache = compiled.engine.compile_cache
    assert cache is not None and cache.folder.parent == compiled.folder / "img2vid"
    assert cache.files(), "the warm-up should have saved its artefacts"
    facts = (cache.folder / "key.json").read_text()
    assert torch.__version__ in facts and '"dtype": "float32"' in facts


def test_fast_on_the_compiled_blocks_reuses_deep_features_and_stays_close(compiled: Compiled) -> None:
    parts = compiled.engine.components()
    fast = LocalEngine.from_components(parts, device="cpu", speed="fast", deep_cache_interval=2, warm_up=None)
    request = VideoRequest(image=small_image(2), seed=21, frames=2, steps=3, cfg_scale=2.5)
    reused = fast.generate(request)
    full = compiled.engine.generate(request)
    assert reused.engine_settings["speed"] == "fast" and reused.engine_settings["deep_cache_interval"] == 2
    assert not np.array_equal(reused.frames, full.frames)  # step 1 reused step 0's deep features
    # Noise from a random tiny model is the worst case for reuse; real models change less between steps.
    assert np.abs(reused.frames.astype(np.int16) - full.frames.astype(np.int16)).mean() < 40


_WARM_START = """
import json, sys, time
started = time.perf_counter()
from torch._dynamo.utils import counters
from img2vid.engines.local import LocalEngine
engine = LocalEngine("tiny", device="cpu", speed="compiled", warm_up=(int(sys.argv[1]), int(sys.argv[2])))
engine.load()
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "loaded_files": engine.compile_cache.loaded_files,
    "hits": counters["inductor"]["fxgraph_cache_hit"] + counters["aot_autograd"]["autograd_cache_hit"],
    "misses": counters["inductor"]["fxgraph_cache_miss"],
}))
"""


def test_a_fresh_process_starts_warm_from_the_saved_artefacts_alone(compiled: Compiled, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    src = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        "IMG2VID_COMPILE_CACHE": str(compiled.folder / "img2vid"),
        # An empty inductor cache: only img2vid's artefact files can make this start warm.
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
    }
    done = subprocess.run(
        [sys.executable, "-c", _WARM_START, str(WIDTH), str(HEIGHT)], env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded_files"] >= 1
    assert report["hits"] > 0 and report["misses"] == 0
    print(f"warm start of the tiny model: {report['seconds']:.0f} s (cold: {compiled.load_seconds:.0f} s)")
