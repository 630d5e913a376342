"""Benchmark: img2vid's LocalEngine against diffusers' stock StableVideoDiffusionPipeline, in one run.

Full form (needs a CUDA GPU): the real SVD-XT architecture with random weights (speed and memory do not
depend on the values, and the real weights are gated), 1024x576, 25 frames, 25 steps, with classifier-free
guidance. img2vid runs with its automatic choices (dtype, decode chunk, offload); diffusers runs in fp16
with its default settings (all frames decoded at once, no offload). Reported per contender: seconds per
clip, per UNet step (both CFG halves), for the VAE decode, and peak GPU memory, plus the TFLOP/s those
times imply (one clip is about 4,175 TFLOP: about 160 per CFG UNet step and 174 for the decode).

Smoke form (``--smoke``, CPU, seconds): the same measurements with the tiny random model at a small size,
and the largest pixel difference between the two contenders' frames (fp32, same seed), which the local
engine's parity promise holds to 1/255. It checks that the benchmark itself works; its timings say
nothing about GPU speed.

    python bench/engine.py            # full form, on a GPU
    python bench/engine.py --smoke    # tiny model, CPU

Writes bench/results/engine.md (or ``--out``). Each contender's weights are the only model on the device
while it runs; each is warmed up once, then timed ``--repeats`` times (default 3) and the median
run is reported.
"""

from __future__ import annotations

import argparse
import gc
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

DEFAULT_OUT = ROOT / "bench" / "results" / "engine.md"

#: From the task's arithmetic for full-size SVD-XT at 1024x576, 25 frames.
TFLOP_PER_CFG_STEP = 160.0
TFLOP_DECODE = 174.0
TFLOP_CLIP = 4175.0


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
SMOKE = Setup(width=256, height=128, frames=2, steps=3)


@dataclass
class Result:
    """One contender's measurements (seconds; bytes)."""

    name: str
    settings: str
    clip_s: float
    step_s: float
    decode_s: float
    peak_bytes: int | None
    frames: np.ndarray = field(repr=False)


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


def _image(setup: Setup) -> np.ndarray:
    y, x = np.mgrid[0 : setup.height, 0 : setup.width]
    rng = np.random.default_rng(0)
    image = np.stack([255 * x / setup.width, 255 * y / setup.height, 128 + 0 * x], axis=-1)
    return np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)


def _summarise(name: str, settings: str, clock: Clock, steps: int, frames: np.ndarray, peak: int | None) -> Result:
    marks = clock.marks
    # marks: start, end of each step..., end of run. Step times exclude the first step, which also
    # carries the image encoding; the decode is from the last step's end to the frames.
    step_ends = marks[1 : 1 + steps]
    step_times = np.diff(step_ends) if len(step_ends) > 1 else np.array([step_ends[0] - marks[0]])
    return Result(
        name=name,
        settings=settings,
        clip_s=marks[-1] - marks[0],
        step_s=float(np.median(step_times)),
        decode_s=marks[-1] - step_ends[-1],
        peak_bytes=peak,
        frames=frames,
    )


def _median(runs: list[Result]) -> Result:
    """The run with the median time per clip (the other figures come from that same run)."""
    return sorted(runs, key=lambda r: r.clip_s)[len(runs) // 2]


def decode_chunk_of(texts: list[str]) -> int:
    """The decode chunk a run used, from its first "decoding frames 1-N/T" progress text."""
    match = re.match(r"decoding frames 1-(\d+)/", texts[0]) if texts else None
    if match is None:
        raise ValueError(f"no decode progress among {texts!r}")
    return int(match.group(1))


def run_img2vid(parts: Any, setup: Setup, device: str, torch: Any, sync: Callable[[], None], repeats: int) -> Result:
    from img2vid import VideoRequest
    from img2vid.engines.local import LocalEngine

    engine = LocalEngine.from_components(parts, device=device)
    request = VideoRequest(
        image=_image(setup), seed=setup.seed, cfg_scale=setup.cfg_scale, frames=setup.frames, steps=setup.steps
    )
    engine.generate(request.with_options(steps=2))  # warm-up
    clock = Clock(sync)
    decode_chunks: list[str] = []

    def on_progress(fraction: float | None, text: str) -> None:
        if text.startswith("step"):
            clock.mark()
        else:
            decode_chunks.append(text)

    runs = []
    for _ in range(repeats):
        decode_chunks.clear()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        clock.start()
        video = engine.generate(request, progress=on_progress)
        clock.mark()
        peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
        dtype = str(engine.dtype).removeprefix("torch.")
        settings = f"{dtype}, decode chunk {decode_chunk_of(decode_chunks)}, offload {engine._offload}"
        runs.append(_summarise("img2vid LocalEngine", settings, clock, setup.steps, video.frames, peak))
    return _median(runs)


def run_diffusers(
    parts: Any, setup: Setup, device: str, dtype: Any, torch: Any, sync: Callable[[], None], repeats: int
) -> Result:
    from PIL import Image

    pipe = parts.stock_pipeline()
    pipe.to(device)  # the parts are already in `dtype`; casting again only makes diffusers warn
    image = Image.fromarray(_image(setup))
    common = dict(
        height=setup.height, width=setup.width, num_frames=setup.frames, max_guidance_scale=setup.cfg_scale, output_type="np"
    )
    pipe(image, num_inference_steps=2, generator=torch.Generator(device).manual_seed(setup.seed), **common)  # warm-up
    clock = Clock(sync)

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        clock.mark()
        return tensors

    runs = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        clock.start()
        out = pipe(
            image,
            num_inference_steps=setup.steps,
            generator=torch.Generator(device).manual_seed(setup.seed),
            callback_on_step_end=on_step_end,
            **common,
        ).frames[0]
        clock.mark()
        peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
        frames = np.round(np.asarray(out) * 255.0).astype(np.uint8)
        settings = f"{str(dtype).removeprefix('torch.')}, default settings (decode all {setup.frames} frames at once)"
        runs.append(_summarise("diffusers StableVideoDiffusionPipeline", settings, clock, setup.steps, frames, peak))
    return _median(runs)


def _free(torch: Any) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _fmt_bytes(value: int | None) -> str:
    return "n/a (CPU)" if value is None else f"{value / 1024**3:.1f} GiB"


def render(results: list[Result], setup: Setup, *, smoke: bool, device_name: str, notes: list[str], repeats: int) -> str:
    import diffusers
    import torch

    lines = [
        "# Local engine benchmark",
        "",
        f"Written by `python bench/engine.py{' --smoke' if smoke else ''}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        *notes,
        "",
        f"- Device: {device_name}; torch {torch.__version__}, diffusers {diffusers.__version__}, Python {platform.python_version()}",
        f"- Model: {'tiny random model' if smoke else 'full-size SVD-XT architecture, random weights'}",
        f"- Job: {setup.width}x{setup.height}, {setup.frames} frames, {setup.steps} steps, cfg {setup.cfg_scale} "
        "(classifier-free guidance: both halves in one batched UNet call per step), seed "
        f"{setup.seed}; each contender warmed up once, then timed {repeats} times (the median run is shown)",
        "",
        "| contender | settings | s / clip | s / UNet step | s VAE decode | peak GPU memory |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.settings} | {r.clip_s:.2f} | {r.step_s:.3f} | {r.decode_s:.2f} | {_fmt_bytes(r.peak_bytes)} |"
        )
    if len(results) == 2:
        ours, theirs = results
        lines += ["", f"img2vid / diffusers time per clip: {ours.clip_s / theirs.clip_s:.2f}x."]
        if smoke:
            diff = int(np.abs(ours.frames.astype(np.int16) - theirs.frames.astype(np.int16)).max())
            lines.append(f"Largest pixel difference between the two contenders' frames (fp32, same seed): {diff}/255.")
    if not smoke:
        lines += ["", "Implied throughput (from the task's FLOP counts: 160 TFLOP per CFG step, 174 per decode, 4,175 per clip):", ""]
        for r in results:
            lines.append(
                f"- {r.name}: {TFLOP_PER_CFG_STEP / r.step_s:.0f} TFLOP/s in the UNet, {TFLOP_DECODE / r.decode_s:.0f} TFLOP/s "
                f"in the decode, {TFLOP_CLIP / r.clip_s:.0f} TFLOP/s over the clip"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the benchmark runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender; the median is reported")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    import torch

    from img2vid.engines.local.tiny import build_random_svd_xt, build_tiny

    notes: list[str] = []
    if args.smoke:
        setup, device, dtype = SMOKE, "cpu", torch.float32
        device_name = f"CPU ({platform.processor() or platform.machine()})"
        make = build_tiny
        notes.append(
            "Smoke form: the tiny random model on the CPU, so these timings say nothing about GPU speed, and on a "
            "shared CPU they vary by several times from run to run. "
            + (
                "No CUDA GPU was available where this file was written; the full form "
                "(`python bench/engine.py` on a GPU) replaces it with full-size SVD-XT figures."
                if not torch.cuda.is_available()
                else "Run the full form for GPU figures."
            )
        )
        sync: Callable[[], None] = lambda: None  # noqa: E731
    else:
        if not torch.cuda.is_available():
            print("the full benchmark needs a CUDA GPU; use --smoke to check it on a CPU", file=sys.stderr)
            return 2
        setup, device, dtype = FULL, "cuda", torch.float16
        device_name = torch.cuda.get_device_name(0)
        make = lambda: build_random_svd_xt(device="cuda", dtype=torch.float16)  # noqa: E731
        sync = torch.cuda.synchronize
        notes.append("Full form: full-size SVD-XT architecture with random weights on the GPU.")

    results = [run_img2vid(make(), setup, device, torch, sync, args.repeats)]
    _free(torch)
    results.append(run_diffusers(make(), setup, device, dtype, torch, sync, args.repeats))
    _free(torch)

    text = render(results, setup, smoke=args.smoke, device_name=device_name, notes=notes, repeats=args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
