"""``img2vid generate``: images in, one video file per image out, through any engine.

The command only parses options, builds a ``VideoRequest`` per image, asks :func:`choose_engine` for the
engine and saves each ``Video``; all protocol and model logic lives in the engines. Heavy imports (torch
for the local engine) happen only once an engine is chosen.
"""

from __future__ import annotations

import logging
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..engines.base import Engine
from ..engines.modes import MEMORY_MODES, SPEED_MODES
from ..errors import InvalidInputError
from ..families import FAMILIES
from ..fitting import FitMode
from ..request import DEFAULT_MOTION_BUCKET_ID, ENGINE_DEFAULTS, MAX_PROMPT_CHARS, RANGES, VideoRequest
from ..video import Video
from .exits import report_error

__all__ = ["generate", "output_paths"]


class OutputFormat(str, Enum):
    mp4 = "mp4"
    webm = "webm"
    webp = "webp"
    gif = "gif"
    png = "png"


class DType(str, Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


# Built from the one list of mode names; type checkers cannot read a functional Enum as a type, so the
# options' annotations below say so where they use these.
Speed = Enum("Speed", {mode: mode for mode in SPEED_MODES}, type=str)  # type: ignore[misc]
Memory = Enum("Memory", {mode: mode for mode in MEMORY_MODES}, type=str)  # type: ignore[misc]


def output_paths(images: list[Path], output: str | Path | None, fmt: str) -> list[Path]:
    """Where each image's video goes.

    No ``-o``: ``<image stem>.<fmt>`` in the current folder. ``-o`` a folder (existing, or ending in
    ``/``): ``<folder>/<image stem>.<fmt>``. ``-o`` a file with several images: numbered ``name_1.ext``,
    ``name_2.ext`` and so on, so no video overwrites another (inputs that share a name are numbered too).
    """
    suffix = "" if fmt == "png" else f".{fmt}"
    # The raw text matters: Path("out/") forgets the slash that says "a folder".
    is_folder = output is not None and (str(output).endswith(("/", "\\")) or Path(output).is_dir())
    if output is not None and not is_folder:
        target = Path(output)
        if len(images) == 1:
            return [target]
        stem, ext = target.stem, target.suffix or suffix
        return [target.with_name(f"{stem}_{index}{ext}") for index in range(1, len(images) + 1)]
    folder = Path() if output is None else Path(output)
    stems = [image.stem for image in images]
    # Two inputs with the same name (a/x.png, b/x.jpg) must not write the same video: number them all.
    if len(set(stems)) < len(stems):
        return [folder / f"{stem}_{index}{suffix}" for index, stem in enumerate(stems, start=1)]
    return [folder / (stem + suffix) for stem in stems]


def _format_for(output: str | None, fmt: OutputFormat | None) -> str:
    suffix = Path(output).suffix.lower().lstrip(".") if output is not None else ""
    named = suffix if suffix in {f.value for f in OutputFormat} else None
    if fmt is not None:
        if named is not None and named != fmt.value:
            raise InvalidInputError(
                f"--format {fmt.value} does not match the output file {output}: drop one, or make them agree",
                field="format",
                value=fmt.value,
                allowed=named,
            )
        return fmt.value
    is_folder = output is not None and (output.endswith(("/", "\\")) or Path(output).is_dir())
    if suffix and named is None and not is_folder:
        allowed = ", ".join(f".{f.value}" for f in OutputFormat if f is not OutputFormat.png)
        raise InvalidInputError(
            f"the output file {output} ends in .{suffix}, which img2vid does not write: use {allowed}, "
            "or a folder with --format png",
            field="output",
            value=output,
            allowed=allowed,
        )
    return named or "mp4"


def _span(name: str) -> str:
    """A field's range as the help writes it ("1..255"), from the one table validation uses."""
    kind, low, high = RANGES[name]
    return f"{int(low)}..{int(high)}" if kind is int else f"{low:g}..{high:g}"


def _family_defaults(attribute: str) -> str:
    """One default per family as the help writes it ("SVD 25, Wan 2.2 TI2V-5B 50, ..."), from the table."""
    seen: dict[str, str] = {}
    for family in FAMILIES.values():
        value = getattr(family, attribute)
        if value is not None:
            seen.setdefault(family.title, f"{value:g}" if isinstance(value, float) else str(value))
    return ", ".join(f"{title} {value}" for title, value in seen.items())


_SHORT_NAMES = ", ".join(FAMILIES)


def _enable_debug_logging() -> logging.Handler:
    """Debug lines of img2vid and httpx on stderr; they pass through the key-redacting filter."""
    from ..redact import install_log_filter

    install_log_filter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


def generate(
    images: Annotated[list[Path], typer.Argument(help="Input image(s): PNG, JPEG, WebP or anything Pillow reads.")],
    engine: Annotated[
        Optional[str],
        typer.Option(
            help="stability (the hosted service), local, or an img2vid/protocol server URL "
            "(default: the configured server if there is one, else local)."
        ),
    ] = None,
    base_url: Annotated[
        Optional[str],
        typer.Option("--base-url", help="An img2vid server's URL (the same as --engine URL); --model then names one of its models."),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            help=f"Local model: a short name ({_SHORT_NAMES}), a hub id, a diffusers folder (SVD, Wan or LTX-Video), "
            "an SVD .safetensors checkpoint, or 'tiny' / 'tiny-<short name>' (tiny random models for offline smoke "
            "runs: they make noise, not video); implies --engine local. With --base-url (or --engine URL): the "
            "name of one of that server's models (its GET /info lists them)."
        ),
    ] = None,
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", help="Output file, or folder (an existing one, or ending in /).")
    ] = None,
    format: Annotated[Optional[OutputFormat], typer.Option("--format", help="Output format (default: from -o, else mp4).")] = None,
    seed: Annotated[int, typer.Option(help=f"{_span('seed')}; 0 picks a random seed.")] = 0,
    prompt: Annotated[
        Optional[str], typer.Option(help=f"Wan and LTX-Video: what should happen in the video (at most {MAX_PROMPT_CHARS} characters).")
    ] = None,
    negative_prompt: Annotated[
        Optional[str], typer.Option(help="Wan and LTX-Video: what to avoid (default: the model's recommended negative prompt).")
    ] = None,
    cfg_scale: Annotated[
        Optional[float],
        typer.Option(help=f"{_span('cfg_scale')}: guidance, how closely the video follows the image and prompt (default: the model's: {_family_defaults('default_cfg_scale')})."),
    ] = None,
    motion_bucket_id: Annotated[
        Optional[int], typer.Option(help=f"SVD: {_span('motion_bucket_id')}, more is more motion (default {DEFAULT_MOTION_BUCKET_ID}).")
    ] = None,
    fit: Annotated[FitMode, typer.Option(help="How an image of another size is fitted.")] = FitMode.CROP,
    timeout: Annotated[Optional[float], typer.Option(help="Remote engine: give up after this many seconds (default 600).")] = None,
    device: Annotated[Optional[str], typer.Option(help="Local engine: cuda, cuda:1, mps or cpu (default: best available).")] = None,
    dtype: Annotated[Optional[DType], typer.Option(help="Local engine: weights' dtype (default: bf16/fp16 on GPU, fp32 on CPU).")] = None,
    frames: Annotated[
        Optional[int],
        typer.Option(help=f"Local engine: frames to make; Wan takes 4k+1, LTX-Video 8k+1 (default: the model's: SVD-XT 25, {_family_defaults('default_frames')})."),
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option(help=f"Local engine: denoising steps (default: the model's: {_family_defaults('default_steps')}).")
    ] = None,
    fps: Annotated[
        Optional[int],
        typer.Option(help=f"Local engine: frame rate, for SVD and LTX-Video also the model's fps conditioning (default: SVD {ENGINE_DEFAULTS['fps']}; {_family_defaults('default_fps')})."),
    ] = None,
    noise_aug: Annotated[Optional[float], typer.Option(help=f"Local engine: noise added to the image (default {ENGINE_DEFAULTS['noise_aug_strength']}).")] = None,
    min_guidance: Annotated[Optional[float], typer.Option(help=f"Local engine: guidance on the first frame (default {ENGINE_DEFAULTS['min_guidance_scale']}).")] = None,
    decode_chunk: Annotated[Optional[int], typer.Option(help="Local engine: frames decoded at once (default: from free memory).")] = None,
    speed: Annotated[
        Optional[Speed],  # pyright: ignore[reportInvalidTypeForm]
        typer.Option(
            help="Local engine: eager, compiled (default on CUDA; the first start compiles for minutes, later "
            "ones reuse the cache), fp8 (compiled with FP8 layers; GPUs of compute capability 8.9+, needs torchao) "
            "or fast (compiled, reusing deep features across steps; slightly different frames)."
        ),
    ] = None,
    memory: Annotated[
        Optional[Memory],  # pyright: ignore[reportInvalidTypeForm]
        typer.Option(
            help="Local engine: auto (default: low when the GPU's free memory is short) or low (model offload and VAE "
            "tiling: SVD-XT in 8 GiB, Wan 2.2 TI2V-5B at 720p on a 24 GB card)."
        ),
    ] = None,
    lora: Annotated[
        Optional[list[str]],
        typer.Option(metavar="FILE[:WEIGHT]", help="Wan and LTX-Video: a LoRA file loaded into the transformer, FILE or FILE:WEIGHT (repeatable)."),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks and debug logs (API keys are masked).")] = False,
) -> None:
    """Make a video from each image.

    Each saved file's path goes to stdout, one per line (for scripts); progress and errors go to stderr.
    """
    console = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line per line
    handler = _enable_debug_logging() if debug else None
    chosen: Engine | None = None
    try:
        engine = _server_or_engine(engine, base_url)
        fmt = _format_for(output, format)
        targets = output_paths(images, output, fmt)
        requests = [
            VideoRequest(
                image=image,
                seed=seed,
                cfg_scale=cfg_scale,
                motion_bucket_id=motion_bucket_id,
                prompt=prompt,
                negative_prompt=negative_prompt,
                frames=frames,
                steps=steps,
                fps=fps,
                noise_aug_strength=noise_aug,
                min_guidance_scale=min_guidance,
                decode_chunk_size=decode_chunk,
                fit=fit,
            )
            for image in images
        ]
        from ..engines.select import choose_engine

        chosen = choose_engine(
            engine,
            model,
            timeout=timeout,
            device=device,
            dtype=dtype.value if dtype else None,
            speed=speed.value if speed else None,
            memory=memory.value if memory else None,
            loras=lora or (),
        )
        for index, (image, request, target) in enumerate(zip(images, requests, targets, strict=True), start=1):
            label = f"[{index}/{len(images)}] {image.name}" if len(images) > 1 else image.name
            video = _run_one(chosen, request, label, console)
            video.save(target, fmt)
            seed_text = "seed not reported" if video.seed is None else f"seed {video.seed}"
            mode = video.engine_settings.get("speed")
            how = f", speed {mode}, memory {video.engine_settings.get('memory')}" if mode else ""
            console.print(
                f"{label}: {video.num_frames} frames, {video.width}x{video.height}, {video.fps:g} fps, "
                f"{seed_text}{how} -> {target}",
                markup=False,
            )
            typer.echo(str(target))
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, debug=debug, console=console)) from None
    finally:
        if chosen is not None:
            chosen.close()  # a remote engine's connections; the shared local engine stays warm
        if handler is not None:
            logging.getLogger().removeHandler(handler)


def _server_or_engine(engine: str | None, base_url: str | None) -> str | None:
    """--base-url is --engine URL by another name; both, differing, is an error rather than a guess."""
    if base_url is None:
        return engine
    if not base_url.strip().startswith(("http://", "https://")):
        raise InvalidInputError.for_field("base_url", base_url, "an http:// or https:// URL")
    if engine is not None and engine.strip() != base_url.strip():
        raise InvalidInputError(
            f"--base-url {base_url} and --engine {engine} disagree: drop one of them",
            field="base_url",
            value=base_url,
            allowed="the same server as --engine, or --engine left out",
        )
    return base_url.strip()


def _run_one(engine: Engine, request: VideoRequest, label: str, console: Console) -> Video:
    """One generation with a live progress bar; Ctrl-C sets the cancel flag and the engine stops."""
    stop = threading.Event()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None, status="")

        def on_progress(fraction: float | None, text: str) -> None:
            if fraction is None:
                bar.update(task, total=None, status=text)
            else:
                bar.update(task, total=1.0, completed=max(0.0, min(1.0, fraction)), status=text)

        try:
            return engine.generate(request, progress=on_progress, cancel=stop.is_set)
        except KeyboardInterrupt:
            stop.set()
            raise
