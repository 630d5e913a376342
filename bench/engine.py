"""Benchmark: every speed and memory mode of img2vid's LocalEngine against diffusers' stock pipeline, in one run.

Full form (needs a CUDA GPU): the real SVD-XT architecture with random weights (speed and memory do not
depend on the values, and the real weights are gated), 1024x576, 25 frames, 25 steps, with classifier-free
guidance. Contenders, each on its own freshly built model:

- ``diffusers-fp16``: diffusers' ``StableVideoDiffusionPipeline`` in fp16 with its defaults (the reference);
- ``eager``, ``compiled``, ``fp8``, ``fast``: LocalEngine's speed modes with automatic dtype and memory;
- ``low``: LocalEngine with ``memory="low"`` (speed ``eager``): the 8 GiB recipe.

Per contender: seconds per clip, per UNet step (both CFG halves), for the VAE decode, peak GPU memory, the
cold start (building the engine and ``load()``, which compiles in the compiled modes), the warm start of
a fresh process that loads the compile cache (``--warm-start`` modes; default ``compiled``), the ratio of
diffusers' time per clip to the contender's, and the PSNR of its frames against ``eager``'s on the same
seed. A mode the machine cannot run (``fp8`` below compute capability 8.9) is recorded as skipped with the
reason. Caches: torch's and img2vid's compile caches are pointed at a fresh temporary folder, so the first
compiled mode starts truly cold; later modes reuse the graphs they share with it (the VAE decoder, and
for ``fast`` all of ``compiled``'s blocks), which their notes say.

Smoke form (``--smoke``, CPU): the tiny random model at a small size, to check the benchmark itself;
its timings say nothing about GPU speed.

Text-conditioned families (``--family wan2.2-ti2v-5b``, ``--family ltx-video``; ``--family all`` runs SVD
and both; any family key of ``img2vid.families`` is accepted): the family's full-size architecture with
random weights (``tiny_families.build_random_pipeline``, bf16), at its native size and default frame count
(Wan 2.2 TI2V-5B 1280x704, LTX-Video 704x480, 121 frames each), its default steps (``--steps`` overrides:
seconds per step do not depend on the count) and guidance scale, one prompt and the family's negative
prompt. The contenders: ``diffusers-bf16``, the very pipeline class (``WanImageToVideoPipeline``,
``LTXImageToVideoPipeline``) called directly, then LocalEngine around a freshly built pipeline
(``LocalEngine.from_pipeline``) in each speed and memory mode, as for SVD. A family's cold start is the
build, the engine's placement and a 2-step warm-up clip at the benchmark's size (the families compile on
their first job, at its shape, so that run is where the compiled modes compile); its warm start is the
same for a fresh process with the compile cache filled. The smoke form runs the tiny pipeline of the
family (64x64, 9 frames, 2 steps).

    python bench/engine.py                       # full form, on a GPU: bench/results/gpu-<gpu name>.json
    python bench/engine.py --smoke --modes eager,fp8
    python bench/engine.py --family ltx-video --steps 10   # bench/results/gpu-<gpu name>-ltx-video.json
    python bench/engine.py --smoke --family wan2.2-ti2v-5b # bench/results/cpu-smoke-wan2.2-ti2v-5b.json

Writes the JSON results (``--out``) and a Markdown table beside it (same name, ``.md``), and prints the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "bench" / "results"
#: In this order by default: ``low`` before any compiled mode, so its peak memory is measured on a clean device.
ALL_MODES = ("diffusers-fp16", "eager", "low", "compiled", "fast", "fp8")
#: Targets from the issue that asked for these modes (ratios against diffusers fp16 in the same run).
TARGETS = {"compiled": 1.5, "fp8": 1.8, "fast": 2.5}
TARGET_FP8_PSNR = 35.0
TARGET_LOW_PEAK_GIB = 8.0
TARGET_WARM_START_S = 60.0


@dataclass(frozen=True)
class Setup:
    """What one benchmark run generates."""

    width: int
    height: int
    frames: int
    steps: int
    cfg_scale: float = 2.5
    seed: int = 1234


FULL = Setup(width=1024, height=576, frames=25, steps=25)
SMOKE = Setup(width=192, height=128, frames=2, steps=3)

#: A text-conditioned family's reference: its diffusers pipeline called directly, in the dtype it was built in.
FAMILY_REFERENCE = "diffusers-bf16"
#: The text-conditioned families' contenders, in this order by default (``low`` before the compiled modes).
FAMILY_MODES = (FAMILY_REFERENCE, "eager", "low", "compiled", "fast", "fp8")
#: ``--modes`` may name the reference by any of these, so one list serves SVD and the families.
REFERENCE_NAMES = ("diffusers", "diffusers-fp16", "diffusers-bf16")
#: What ``--family all`` runs (the larger families do not fit a benchmark run's time; name them to run them).
ALL_FAMILIES = ("svd", "wan2.2-ti2v-5b", "ltx-video")
#: The prompt of every family run: words the tiny tokenizer knows, so that the smoke form encodes them too.
PROMPT = "a cat walks slowly in the rain, the camera pans"
#: The smoke form's size for the families: (width, height, frames, steps).
FAMILY_SMOKE = (64, 64, 9, 2)


@dataclass(frozen=True)
class FamilySetup(Setup):
    """What one run of a text-conditioned family generates: a Setup plus the prompt and frame rate."""

    family: str = ""
    fps: int = 24
    prompt: str = PROMPT
    negative_prompt: str | None = None


@dataclass
class Result:
    """One contender's measurements (seconds; GiB; dB), or why it was not measured."""

    mode: str
    status: str = "ok"
    settings: dict[str, Any] = field(default_factory=dict)
    clip_s: float | None = None
    step_s: float | None = None
    decode_s: float | None = None
    peak_gib: float | None = None
    cold_start_s: float | None = None
    warm_start_s: float | None = None
    speedup: float | None = None
    psnr_vs_eager_db: float | None = None
    #: ``fast`` only: how far feature reuse moves the frames from ``compiled``'s on the same seed.
    psnr_vs_compiled_db: float | None = None
    notes: list[str] = field(default_factory=list)
    frames: np.ndarray | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("frames")
        return data


class Clock:
    """Wall-clock marks that first wait for the GPU, so asynchronous kernels are counted where they run."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.marks: list[float] = []

    def start(self) -> None:
        self.sync()
        self.marks = [time.perf_counter()]

    def mark(self) -> None:
        self.sync()
        self.marks.append(time.perf_counter())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 frame arrays in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def image_for(setup: Setup) -> np.ndarray:
    y, x = np.mgrid[0 : setup.height, 0 : setup.width]
    rng = np.random.default_rng(0)
    image = np.stack([255 * x / setup.width, 255 * y / setup.height, 128 + 0 * x], axis=-1)
    return np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)


def timings(clock: Clock, steps: int) -> tuple[float, float, float]:
    """diffusers' run, marked at each step's end: seconds per clip, mean per step (from the first step's
    end to the last's, since the first also encodes the image), decode (after the last step)."""
    marks = clock.marks
    step_ends = marks[1 : 1 + steps]
    step_s = (step_ends[-1] - step_ends[0]) / (steps - 1) if steps > 1 else step_ends[0] - marks[0]
    return marks[-1] - marks[0], step_s, marks[-1] - step_ends[-1]


def engine_options(mode: str) -> dict[str, Any]:
    """LocalEngine options for a bench mode."""
    if mode == "low":
        return {"speed": "eager", "memory": "low"}
    return {"speed": mode}


def uint8_frames(out: Any) -> np.ndarray:
    """diffusers' ``output_type="np"`` frames (floats in [0, 1]) as uint8, the way the engine returns them
    (random weights in bf16 may overflow: NaN becomes black rather than an undefined cast)."""
    frames = np.nan_to_num(np.asarray(out, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


class Bench:
    """One benchmark run: the setup, the device and how to build a fresh model."""

    def __init__(self, setup: Setup, device: str, make: Callable[[], Any], repeats: int) -> None:
        import torch

        self.torch = torch
        self.setup, self.device, self.make, self.repeats = setup, device, make, repeats
        self.cuda = device.startswith("cuda")
        self.sync: Callable[[], None] = torch.cuda.synchronize if self.cuda else (lambda: None)
        #: Extra arguments of a warm-start probe (the family, a ``--steps`` override), so it builds the same run.
        self.probe_args: list[str] = []

    def _peak_reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def _peak(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    def _timed_clips(self, engine: Any, request: Any, steps: int, result: Result) -> None:
        """``repeats`` timed clips on a warm engine; the median clip's figures go into ``result``. The
        engine times its own phases (synchronising the device at each end): the denoising loop's mean
        step and the decode, as the video reports them."""
        clock = Clock(self.sync)
        runs = []
        for _ in range(self.repeats):
            self._peak_reset()
            clock.start()
            video = engine.generate(request)
            clock.mark()
            clip_s = clock.marks[-1] - clock.marks[0]
            runs.append((clip_s, video.timings["denoise"] / steps, video.timings["decode"], self._peak(), video))
        clip_s, step_s, decode_s, peak, video = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        result.clip_s, result.step_s, result.decode_s, result.peak_gib = clip_s, step_s, decode_s, peak
        result.settings = dict(video.engine_settings)
        result.frames = video.frames

    def free(self) -> None:
        """Drop the last contender's model: dynamo's caches hold its compiled blocks, so they go first."""
        self.torch._dynamo.reset()
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def _baseline_note(self, result: Result) -> None:
        """Say so when memory from earlier contenders is still held, since the peak figure includes it."""
        if self.cuda:
            held = self.torch.cuda.memory_allocated() / 2**30
            if held > 0.25:
                result.notes.append(f"{held:.1f} GiB was still allocated from earlier contenders when it started")

    def run_engine(self, mode: str, result: Result) -> None:
        from img2vid import VideoRequest
        from img2vid.engines.local import LocalEngine

        setup = self.setup
        self._baseline_note(result)
        started = time.perf_counter()
        engine = LocalEngine.from_components(
            self.make(), device=self.device, warm_up=(setup.width, setup.height), **engine_options(mode)
        )
        engine.load()  # compiles (a 2-step warm-up run) in the compiled modes
        self.sync()
        result.cold_start_s = time.perf_counter() - started
        request = VideoRequest(
            image=image_for(setup), seed=setup.seed, cfg_scale=setup.cfg_scale, frames=setup.frames, steps=setup.steps
        )
        if not engine.speed.compile:
            engine.generate(request.with_options(steps=2))  # the eager modes' warm-up (cuDNN, allocator)
        self._timed_clips(engine, request, setup.steps, result)
        del engine

    def run_diffusers(self, result: Result) -> None:
        from PIL import Image

        torch, setup = self.torch, self.setup
        self._baseline_note(result)
        started = time.perf_counter()
        from img2vid.engines.local.reference import stock_pipeline

        pipe = stock_pipeline(self.make())
        pipe.to(self.device)
        self.sync()
        result.cold_start_s = time.perf_counter() - started
        image = Image.fromarray(image_for(setup))
        common = dict(
            height=setup.height, width=setup.width, num_frames=setup.frames, max_guidance_scale=setup.cfg_scale, output_type="np"
        )
        pipe(image, num_inference_steps=2, generator=torch.Generator(self.device).manual_seed(setup.seed), **common)
        clock = Clock(self.sync)

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            clock.mark()
            return tensors

        runs = []
        for _ in range(self.repeats):
            self._peak_reset()
            clock.start()
            out = pipe(
                image,
                num_inference_steps=setup.steps,
                generator=torch.Generator(self.device).manual_seed(setup.seed),
                callback_on_step_end=on_step_end,
                **common,
            ).frames[0]
            clock.mark()
            frames = np.round(np.asarray(out) * 255.0).astype(np.uint8)
            runs.append((*timings(clock, setup.steps), self._peak(), frames))
        clip_s, step_s, decode_s, peak, frames = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        result.clip_s, result.step_s, result.decode_s, result.peak_gib = clip_s, step_s, decode_s, peak
        dtype = str(pipe.unet.dtype).removeprefix("torch.")
        result.settings = {"dtype": dtype, "decode_chunk": setup.frames, "offload": False, "speed": "stock diffusers"}
        result.frames = frames
        del pipe

    def warm_start(self, mode: str, cache_env: dict[str, str], smoke: bool) -> float:
        """Seconds from starting a fresh Python process to its first clip, with the compile cache filled.

        The child gets an empty inductor cache of its own, so only img2vid's artefact files can make it warm.
        """
        env = {**os.environ, **cache_env, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="inductor-warm-")}
        command = [sys.executable, str(Path(__file__).resolve()), "--probe", mode] + (["--smoke"] if smoke else []) + self.probe_args
        started = time.time()
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if completed.returncode != 0:
            raise RuntimeError(f"warm-start probe failed: {completed.stderr.strip().splitlines()[-1:]}")
        finished = json.loads(completed.stdout.strip().splitlines()[-1])["first_clip_done_at"]
        return finished - started


class FamilyBench(Bench):
    """One benchmark run of a text-conditioned family (Wan, LTX-Video): the contenders get a fresh pipeline
    each, from ``make``; the engine wraps it (``LocalEngine.from_pipeline``), the reference calls it."""

    def __init__(self, setup: FamilySetup, device: str, make: Callable[[], Any], repeats: int, family: Any) -> None:
        super().__init__(setup, device, make, repeats)
        self.family_setup = setup
        self.family = family

    def request(self, steps: int | None = None) -> Any:
        from img2vid import VideoRequest

        s = self.family_setup
        return VideoRequest(
            image=image_for(s), prompt=s.prompt, negative_prompt=s.negative_prompt, seed=s.seed, cfg_scale=s.cfg_scale,
            frames=s.frames, steps=steps or s.steps, fps=s.fps, fit="strict",
        )

    @staticmethod
    def _flat_note(result: Result) -> None:
        """Random weights could overflow to one flat colour; then equal frames would prove nothing."""
        if result.frames is not None and result.frames.size and result.frames.min() == result.frames.max():
            result.notes.append("its frames are one flat colour, so a PSNR against them says nothing")

    def run_engine(self, mode: str, result: Result) -> None:
        from img2vid.engines.local import LocalEngine

        setup = self.family_setup
        self._baseline_note(result)
        started = time.perf_counter()
        engine = LocalEngine.from_pipeline(self.make(), self.family, device=self.device, **engine_options(mode))
        try:
            engine.load()
            request = self.request()
            # The families compile on their first job, at its shape: this short run is where the compiled
            # modes compile (and where every mode warms cuDNN and the allocator up), so it is cold start.
            engine.generate(request.with_options(steps=2))
            self.sync()
            result.cold_start_s = time.perf_counter() - started
            self._timed_clips(engine, request, setup.steps, result)
            self._flat_note(result)
        finally:
            engine.release()
            del engine

    def run_diffusers(self, result: Result) -> None:
        from PIL import Image

        torch, setup = self.torch, self.family_setup
        self._baseline_note(result)
        started = time.perf_counter()
        pipe = self.make()
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        common: dict[str, Any] = dict(
            image=Image.fromarray(image_for(setup)), prompt=setup.prompt, negative_prompt=setup.negative_prompt,
            height=setup.height, width=setup.width, num_frames=setup.frames, guidance_scale=setup.cfg_scale, output_type="np",
        )
        if self.family.kind == "ltx":
            common["frame_rate"] = setup.fps
        pipe(num_inference_steps=2, generator=torch.Generator(self.device).manual_seed(setup.seed), **common)
        self.sync()
        result.cold_start_s = time.perf_counter() - started
        clock = Clock(self.sync)

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            clock.mark()
            return tensors

        runs = []
        for _ in range(self.repeats):
            self._peak_reset()
            clock.start()
            out = pipe(
                num_inference_steps=setup.steps,
                generator=torch.Generator(self.device).manual_seed(setup.seed),
                callback_on_step_end=on_step_end,
                **common,
            ).frames[0]
            clock.mark()
            runs.append((*timings(clock, setup.steps), self._peak(), uint8_frames(out)))
        clip_s, step_s, decode_s, peak, frames = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        result.clip_s, result.step_s, result.decode_s, result.peak_gib = clip_s, step_s, decode_s, peak
        dtype = str(pipe.transformer.dtype).removeprefix("torch.")
        result.settings = {"dtype": dtype, "offload": False, "speed": "stock diffusers", "pipeline": type(pipe).__name__}
        result.frames = frames
        self._flat_note(result)
        del pipe


def probe(mode: str, smoke: bool, family: str = "svd", steps: int | None = None) -> int:
    """Child process of a warm-start measurement: build, load (from the compile cache), make one clip."""
    from img2vid import VideoRequest
    from img2vid.engines.local import LocalEngine

    if family != "svd":
        setup, device, make, _, tiny_or_full = _family_platform(family, smoke, steps)
        bench = FamilyBench(setup, device, make, 1, tiny_or_full)
        engine = LocalEngine.from_pipeline(make(), tiny_or_full, device=device, **engine_options(mode))
        engine.load()
        engine.generate(bench.request())
        print(json.dumps({"first_clip_done_at": time.time()}))
        return 0
    setup, device, make = _platform(smoke)[:3]
    if steps:
        setup = replace(setup, steps=steps)
    engine = LocalEngine.from_components(make(), device=device, warm_up=(setup.width, setup.height), **engine_options(mode))
    engine.load()
    engine.generate(
        VideoRequest(image=image_for(setup), seed=setup.seed, cfg_scale=setup.cfg_scale, frames=setup.frames, steps=setup.steps)
    )
    print(json.dumps({"first_clip_done_at": time.time()}))
    return 0


def _platform(smoke: bool) -> tuple[Setup, str, Callable[[], Any], str]:
    import torch

    from img2vid.engines.local.tiny import build_random_svd_xt, build_tiny

    if smoke:
        return SMOKE, "cpu", build_tiny, f"CPU ({platform.processor() or platform.machine()})"
    return FULL, "cuda", lambda: build_random_svd_xt(device="cuda", dtype=torch.float16), torch.cuda.get_device_name(0)


def family_setup(family: Any, smoke: bool, steps: int | None) -> FamilySetup:
    """A family's run: its native size, default frames, steps and guidance (the smoke form's small size)."""
    if smoke:
        width, height, frames, default_steps = FAMILY_SMOKE
    else:
        (width, height), frames, default_steps = family.native_size, family.default_frames, family.default_steps
    return FamilySetup(
        width=width, height=height, frames=frames, steps=steps or default_steps, cfg_scale=family.default_cfg_scale,
        family=family.key, fps=family.default_fps, negative_prompt=family.default_negative_prompt,
    )


def _family_platform(key: str, smoke: bool, steps: int | None) -> tuple[FamilySetup, str, Callable[[], Any], str, Any]:
    """(setup, device, how to build a fresh pipeline, the device's name, the family the engine is told)."""
    import torch

    from img2vid.engines.local.tiny_families import TINY_FAMILY_NAMES, build_random_pipeline, build_tiny_pipeline
    from img2vid.families import FAMILIES, TINY_PREFIX

    family = FAMILIES[key]
    setup = family_setup(family, smoke, steps)
    if smoke:
        tiny = TINY_FAMILY_NAMES[TINY_PREFIX + key]
        return setup, "cpu", lambda: build_tiny_pipeline(tiny), f"CPU ({platform.processor() or platform.machine()})", tiny
    return setup, "cuda", lambda: build_random_pipeline(family, "cuda", torch.bfloat16), torch.cuda.get_device_name(0), family


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def finish(results: list[Result]) -> None:
    """Ratios against diffusers and PSNR against eager, for every measured contender."""
    by_mode = {r.mode: r for r in results if r.status == "ok"}
    reference, eager = by_mode.get("diffusers-fp16") or by_mode.get(FAMILY_REFERENCE), by_mode.get("eager")
    fast, compiled = by_mode.get("fast"), by_mode.get("compiled")
    if fast is not None and compiled is not None and fast.frames is not None and compiled.frames is not None:
        value = psnr(fast.frames, compiled.frames)
        fast.psnr_vs_compiled_db = None if math.isinf(value) else round(value, 2)
    for r in results:
        if r.status != "ok":
            continue
        if reference is not None and r.clip_s:
            r.speedup = reference.clip_s / r.clip_s  # type: ignore[operator]
        if eager is not None and r is not eager and r.frames is not None and eager.frames is not None:
            if r.frames.shape == eager.frames.shape:
                value = psnr(r.frames, eager.frames)
                r.psnr_vs_eager_db = None if math.isinf(value) else round(value, 2)
                if math.isinf(value) and "frames identical to eager's" not in r.notes:
                    r.notes.append("frames identical to eager's")


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(results: list[Result]) -> str:
    lines = [
        "| mode | status | s / clip | x diffusers | s / step | s decode | peak GiB | cold start s | warm start s | PSNR vs eager dB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.status} | {_f(r.clip_s, '.2f')} | {_f(r.speedup, '.2f')} | {_f(r.step_s, '.3f')} | "
            f"{_f(r.decode_s, '.2f')} | {_f(r.peak_gib, '.1f')} | {_f(r.cold_start_s, '.0f')} | "
            f"{_f(r.warm_start_s, '.0f')} | {_f(r.psnr_vs_eager_db, '.1f')} |"
        )
    return "\n".join(lines)


def verdicts(results: list[Result]) -> list[str]:
    """Each target of the issue, met or not, from this run's figures."""
    by_mode = {r.mode: r for r in results if r.status == "ok"}
    out = []
    for mode, target in TARGETS.items():
        r = by_mode.get(mode)
        if r is not None and r.speedup is not None:
            out.append(f"{mode}: {r.speedup:.2f}x diffusers fp16 (target {target}x): {'met' if r.speedup >= target else 'NOT met'}")
    fast = by_mode.get("fast")
    if fast is not None and fast.psnr_vs_compiled_db is not None:
        out.append(f"fast against compiled on the same seed: PSNR {fast.psnr_vs_compiled_db:.1f} dB")
    fp8 = by_mode.get("fp8")
    if fp8 is not None and fp8.psnr_vs_eager_db is not None:
        ok = fp8.psnr_vs_eager_db >= TARGET_FP8_PSNR
        out.append(f"fp8 PSNR vs eager {fp8.psnr_vs_eager_db:.1f} dB (target {TARGET_FP8_PSNR:g}): {'met' if ok else 'NOT met'}")
    low = by_mode.get("low")
    if low is not None and low.peak_gib is not None:
        ok = low.peak_gib <= TARGET_LOW_PEAK_GIB
        out.append(f"low peak {low.peak_gib:.1f} GiB (target {TARGET_LOW_PEAK_GIB:g}): {'met' if ok else 'NOT met'}")
    for r in results:
        if r.warm_start_s is not None:
            ok = r.warm_start_s <= TARGET_WARM_START_S
            out.append(f"{r.mode} warm start {r.warm_start_s:.0f} s (target {TARGET_WARM_START_S:g} s): {'met' if ok else 'NOT met'}")
    return out


def _step_ratio(reference: Result | None, r: Result) -> float | None:
    """diffusers' seconds per step over the contender's: the denoising speed-up, free of the decode."""
    if reference is None or reference.step_s is None or not r.step_s or r.status != "ok":
        return None
    return reference.step_s / r.step_s


def family_table(results: list[Result]) -> str:
    """The SVD table with a column for the per-step ratio (at a few steps the decode weighs on the clip)."""
    reference = next((r for r in results if r.mode == FAMILY_REFERENCE and r.status == "ok"), None)
    lines = [
        "| mode | status | s / clip | x diffusers | s / step | x diffusers per step | s decode | peak GiB | cold start s | "
        "warm start s | PSNR vs eager dB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.status} | {_f(r.clip_s, '.2f')} | {_f(r.speedup, '.2f')} | {_f(r.step_s, '.3f')} | "
            f"{_f(_step_ratio(reference, r), '.2f')} | {_f(r.decode_s, '.2f')} | {_f(r.peak_gib, '.1f')} | "
            f"{_f(r.cold_start_s, '.0f')} | {_f(r.warm_start_s, '.0f')} | {_f(r.psnr_vs_eager_db, '.1f')} |"
        )
    return "\n".join(lines)


def family_verdicts(results: list[Result], setup: Setup, default_steps: int) -> list[str]:
    """A family's figures against diffusers' pipeline in the same run (no targets are set for them yet),
    and, when fewer steps were run than the family's default, the clip they add up to at the default."""
    by_mode = {r.mode: r for r in results if r.status == "ok"}
    reference = by_mode.get(FAMILY_REFERENCE)
    out = []
    for r in by_mode.values():
        if r is reference or r.speedup is None:
            continue
        per_step = _step_ratio(reference, r)
        out.append(
            f"{r.mode}: {r.speedup:.2f}x diffusers' pipeline per clip"
            + (f", {per_step:.2f}x per denoising step" if per_step is not None else "")
        )
    fast = by_mode.get("fast")
    if fast is not None and fast.psnr_vs_compiled_db is not None:
        out.append(f"fast against compiled on the same seed: PSNR {fast.psnr_vs_compiled_db:.1f} dB")
    fp8 = by_mode.get("fp8")
    if fp8 is not None and fp8.psnr_vs_eager_db is not None:
        out.append(f"fp8 PSNR vs eager {fp8.psnr_vs_eager_db:.1f} dB")
    low, eager = by_mode.get("low"), by_mode.get("eager")
    if low is not None and low.peak_gib is not None:
        versus = f" (eager: {eager.peak_gib:.1f} GiB)" if eager is not None and eager.peak_gib is not None else ""
        out.append(f"low peak {low.peak_gib:.1f} GiB{versus}")
    if setup.steps != default_steps:
        for r in by_mode.values():
            if r.clip_s is not None and r.step_s is not None:
                estimate = r.clip_s + (default_steps - setup.steps) * r.step_s
                out.append(f"{r.mode}: about {estimate:.0f} s per {default_steps}-step clip (from {setup.steps} measured steps)")
    return out


def _modes_for(key: str, names: list[str]) -> tuple[list[str], list[str]]:
    """The modes a family runs (the reference under its own name) and the names it does not know."""
    reference, known = ("diffusers-fp16", ALL_MODES) if key == "svd" else (FAMILY_REFERENCE, FAMILY_MODES)
    modes = [reference if m in REFERENCE_NAMES else m for m in names]
    return modes, [m for m in modes if m not in known]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the benchmark runs")
    parser.add_argument(
        "--modes", default=None,
        help=f"comma-separated, from {', '.join(ALL_MODES)} (a family's reference is {FAMILY_REFERENCE}; "
        "'diffusers' names either); default all",
    )
    parser.add_argument("--warm-start", default="compiled", help="modes whose warm start is measured in a fresh process ('' for none)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per contender; the median is reported")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="results JSON (default bench/results/gpu-<gpu name>.json, gpu-<gpu name>-<family>.json for a family; "
        "with several families, each but svd adds -<family> to this name)",
    )
    parser.add_argument(
        "--family", default="svd",
        help=f"svd (the default), a text-conditioned family ({', '.join(ALL_FAMILIES[1:])}, ...), a comma-separated "
        f"list, or all ({', '.join(ALL_FAMILIES)})",
    )
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the family's own; SVD 25)")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from img2vid.families import FAMILIES

    names = [f.strip() for f in args.family.split(",") if f.strip()]
    keys = list(ALL_FAMILIES) if names == ["all"] else names
    unknown_families = [k for k in keys if k != "svd" and (k not in FAMILIES or FAMILIES[k].kind == "svd")]
    if not keys or unknown_families:
        choices = ["svd", "all"] + [k for k, f in FAMILIES.items() if f.kind != "svd"]
        parser.error(f"unknown family {', '.join(unknown_families) or repr(args.family)}; choose from {', '.join(choices)}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.probe:
        return probe(args.probe, args.smoke, keys[0], args.steps)
    plan: list[tuple[str, list[str]]] = []
    for key in keys:
        default = ALL_MODES if key == "svd" else FAMILY_MODES
        modes, unknown = _modes_for(key, [m.strip() for m in (args.modes or ",".join(default)).split(",") if m.strip()])
        if unknown:
            parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(default)}")
        plan.append((key, modes))
    warm = {m.strip() for m in args.warm_start.split(",") if m.strip()}

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("the full benchmark needs a CUDA GPU; use --smoke to check it on a CPU", file=sys.stderr)
        return 2
    for key, modes in plan:
        out = args.out
        if out is not None and len(plan) > 1 and key != "svd":
            out = out.with_name(f"{out.stem}-{key}{out.suffix}")
        if not run(key, modes, warm, args, argv, out):
            break  # stopped (out of time): the next family would be stopped too
    return 0


def run(key: str, modes: list[str], warm: set[str], args: argparse.Namespace, argv: list[str] | None, out: Path | None) -> bool:
    """Benchmark one family's modes, writing its results after each; False if it was stopped."""
    import torch

    if key == "svd":
        setup, device, make, device_name = _platform(args.smoke)
        if args.steps is not None:
            setup = replace(setup, steps=args.steps)
        bench = Bench(setup, device, make, args.repeats)
        model = "tiny random model" if args.smoke else "full-size SVD-XT architecture, random weights"
        out = out or RESULTS / ("cpu-smoke.json" if args.smoke else f"gpu-{slug(device_name)}.json")
        title = device_name
        render, judge = table, verdicts
    else:
        from img2vid.families import FAMILIES

        family = FAMILIES[key]
        setup, device, make, device_name, engine_family = _family_platform(key, args.smoke, args.steps)
        bench = FamilyBench(setup, device, make, args.repeats, engine_family)
        model = (
            f"tiny random {family.title} pipeline" if args.smoke
            else f"full-size {family.title} architecture (family_configs.FULL_SIZE), random weights, bfloat16"
        )
        out = out or RESULTS / (f"cpu-smoke-{key}.json" if args.smoke else f"gpu-{slug(device_name)}-{key}.json")
        title = f"{family.title} on {device_name}"
        render = family_table

        def judge(results: list[Result]) -> list[str]:
            return family_verdicts(results, setup, FAMILY_SMOKE[3] if args.smoke else family.default_steps)

    bench.probe_args = ([] if key == "svd" else ["--family", key]) + ([] if args.steps is None else ["--steps", str(args.steps)])

    # A fresh, private compile cache: the first compiled mode starts truly cold, and nothing touches the
    # user's own cache. Children (warm-start probes) inherit the artefact folder.
    scratch = Path(tempfile.mkdtemp(prefix="img2vid-bench-"))
    cache_env = {"IMG2VID_COMPILE_CACHE": str(scratch / "img2vid")}
    os.environ.update(cache_env)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(scratch / "inductor")

    results: list[Result] = []
    compiled_before = False
    import diffusers

    def write() -> str:
        """Write the JSON and the Markdown table with what is measured so far (after every mode)."""
        finish(results)
        report = {
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python bench/engine.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device": device_name,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "diffusers": diffusers.__version__,
            "python": platform.python_version(),
            "model": model,
            "setup": asdict(setup),
            "repeats": args.repeats,
            "results": [r.public() for r in results],
            "verdicts": judge(results),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        extra = "" if key == "svd" else f", {setup.fps} fps, prompt {setup.prompt!r}"
        summary = (
            f"# Local engine benchmark: {title}\n\n`{report['command'].strip()}` on {report['written']}; torch "
            f"{torch.__version__}, diffusers {diffusers.__version__}; {report['model']}; {setup.width}x{setup.height}, "
            f"{setup.frames} frames, {setup.steps} steps, cfg {setup.cfg_scale}, seed {setup.seed}{extra}.\n\n{render(results)}\n\n"
            + "".join(f"- {line}\n" for line in report["verdicts"])
            + "".join(f"- {r.mode}: {note}\n" for r in results for note in r.notes)
        )
        out.with_suffix(".md").write_text(summary)
        return summary

    stopped = False
    for mode in modes:
        result = Result(mode=mode)
        results.append(result)
        print(f"[bench] {mode} ...", file=sys.stderr, flush=True)
        try:
            if mode.startswith("diffusers"):
                bench.run_diffusers(result)
            else:
                bench.run_engine(mode, result)
                if result.settings.get("compiled") and compiled_before:
                    result.notes.append("cold start after earlier compiled modes filled the caches they share with it")
                compiled_before = compiled_before or bool(result.settings.get("compiled"))
                if mode in warm and result.settings.get("compiled"):
                    result.warm_start_s = bench.warm_start(mode, cache_env, args.smoke)
        except KeyboardInterrupt:
            result.status = "stopped: out of time"
            stopped = True
            write()
            break
        except Exception as error:  # noqa: BLE001 - one mode failing must not lose the others' figures
            from img2vid.errors import InvalidInputError

            kind = "skipped" if isinstance(error, InvalidInputError) else "failed"
            result.status = f"{kind}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        finally:
            bench.free()
        print(f"[bench] {mode}: {result.status} {_f(result.clip_s, '.2f')} s/clip", file=sys.stderr, flush=True)
        write()
    print(write())
    return not stopped


if __name__ == "__main__":
    raise SystemExit(main())
