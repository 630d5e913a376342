"""``LocalEngine``: Stable Video Diffusion, Wan and LTX-Video on this machine's GPU or CPU, behind the engine interface.

It resolves a request's optional numbers against the model family's defaults (``families.py``), refuses
a field the family does not take, fits the image, picks the seed, device, dtype, speed and memory
settings, and hands one run to :func:`pipeline.run_svd` (SVD) or :func:`family_model.run_pipeline` (Wan,
LTX-Video). A model is
loaded once per process and kept warm (:meth:`LocalEngine.shared`); with a compiled speed mode,
:meth:`LocalEngine.load` also compiles (loading earlier starts' artefacts from the compile cache first)
so that a server compiles before it takes jobs. Runs on one engine are serialised by a lock, so a
server's worker threads may share it. It must never print: progress goes through the callback and the
``img2vid.engines.local`` logger.
"""

from __future__ import annotations

import gc
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ...errors import InvalidInputError, ModelError, OutOfMemoryError
from ...families import SVD, Family, check_family_fields
from ...fitting import FitMode, SizeRule
from ...model_names import ModelRef, family_of_folder, identify_model
from ...request import DEFAULT_CFG_SCALE, DEFAULT_MOTION_BUCKET_ID, ENGINE_DEFAULTS, MAX_SEED, VideoRequest
from ...video import Video
from ..base import CancelCheck, Engine, ProgressCallback
from .compile_cache import CompileCache, cache_key, default_cache_folder
from .components import Components
from .device import choose_device, choose_dtype, decode_chunk, free_memory
from .family_model import FamilyParams, LoRA, load_pipeline, pipeline_weight_bytes, prepare_pipeline, run_pipeline
from .memory import MemoryPlan, plan_memory, resolve_memory_mode
from .models import DEFAULT_MODEL, download_index, download_pipeline, load_components, model_scale, place_components
from .pipeline import Placement, SVDParams, run_svd
from .speed import SpeedPlan, apply_speed, resolve_speed

__all__ = ["LocalEngine", "DEFAULT_WARM_UP"]

log = logging.getLogger("img2vid.engines.local")

_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error, or another backend's (MPS raises a plain RuntimeError saying so).

    The one place img2vid recognises running out of memory: the engine raises it on as
    :class:`~img2vid.errors.OutOfMemoryError`, which is all a job runner or front door reads."""
    return isinstance(error, _OUT_OF_MEMORY) or "out of memory" in str(error).lower()


def _check_request(family: Family, request: VideoRequest) -> None:
    """Refuse what the family cannot take: a field it does not read, a frame count outside its rule."""
    check_family_fields(family, request.given())
    if request.frames is not None:
        family.check_frames(request.frames)


def _as_lora(item: LoRA | tuple[str, float] | str) -> LoRA:
    """A LoRA setting from a :class:`LoRA`, a (path, weight) pair, or ``"FILE[:WEIGHT]"``."""
    if isinstance(item, LoRA):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return LoRA(str(item[0]), _lora_weight(item[1], str(item[0])))
    if isinstance(item, str) and item.strip():
        path, _, tail = item.strip().rpartition(":")
        if path and _looks_like_number(tail):
            return LoRA(path, _lora_weight(tail, item))
        return LoRA(item.strip())
    raise InvalidInputError.for_field("lora", item, "a LoRA file, optionally FILE:WEIGHT")


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _lora_weight(value: object, given: str) -> float:
    try:
        weight = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError.for_field("lora", given, "FILE or FILE:WEIGHT with WEIGHT a number from -4 to 4") from None
    if not -4.0 <= weight <= 4.0:
        raise InvalidInputError.for_field("lora", given, "FILE or FILE:WEIGHT with WEIGHT a number from -4 to 4")
    return weight

#: The size :meth:`LocalEngine.load` compiles for when a speed mode compiles: the protocol's default size.
DEFAULT_WARM_UP = (1024, 576)
#: Steps of the warm-up run: one full UNet step and, in ``fast``, one that reuses the deep features.
_WARM_UP_STEPS = 2


class LocalEngine(Engine):
    """Generates videos with a local model: SVD, Wan or LTX-Video (a short name, hub id, diffusers folder,
    SVD ``.safetensors`` file, or ``tiny`` / ``tiny-<family>``).

    ``device`` and ``dtype`` default to the best the machine has (bf16/fp16 on a GPU, fp32 on a CPU).
    ``speed`` is ``eager``, ``compiled`` (the default on CUDA), ``fp8`` or ``fast``; ``memory`` is ``auto``
    (the default: full speed when the GPU's free memory allows, else ``low``) or ``low``; ``offload``
    overrides the model offload either picks. ``compile_cache`` is the folder for compile artefacts
    (default ``$IMG2VID_COMPILE_CACHE`` or the user cache); ``warm_up`` the (width, height) a compiled mode
    compiles for in :meth:`load` (None: compile on the first job instead). Settings are checked at
    construction; the model is loaded on the first :meth:`generate` (or :meth:`load`), and :meth:`close`
    gives its memory back (see :meth:`close` for engines from :meth:`shared`). ``loras`` (Wan and LTX-Video)
    are LoRA files loaded into the transformer with their weights.
    """

    _shared: ClassVar[dict[tuple[Any, ...], LocalEngine]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: str | None = None,
        offload: bool | None = None,
        speed: str | None = None,
        memory: str | None = None,
        compile_cache: str | Path | None = None,
        warm_up: tuple[int, int] | None = DEFAULT_WARM_UP,
        deep_cache_interval: int | None = None,
        loras: Sequence[LoRA | tuple[str, float] | str] = (),
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError.for_field(
                "model", model, f"a short name (svd-xt, wan2.2-ti2v-5b, ltx-video), a hub id (like {DEFAULT_MODEL}), "
                "a folder, a .safetensors file or 'tiny'"
            )
        self.model = model.strip()
        self._size_rule: SizeRule | None = None
        self._ref: ModelRef = identify_model(self.model)
        #: The model's family; ``None`` only for a hub id outside the short names, until it is loaded.
        self.family: Family | None = self._ref.family
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self.loras: tuple[LoRA, ...] = tuple(_as_lora(item) for item in loras)
        self._deep_cache_asked = deep_cache_interval is not None
        self.speed: SpeedPlan = resolve_speed(speed, self.device, deep_cache_interval=deep_cache_interval)
        self._check_family_settings()
        self.memory_mode = resolve_memory_mode(memory)
        if warm_up is not None:
            if not (isinstance(warm_up, tuple) and len(warm_up) == 2 and all(isinstance(v, int) and v >= 64 and v % 64 == 0 for v in warm_up)):
                raise InvalidInputError.for_field("warm_up", warm_up, "None or a (width, height) pair of multiples of 64")
        self.warm_up = warm_up
        self._compile_folder = Path(compile_cache).expanduser() if compile_cache is not None else None
        self._offload_request = offload
        self._parts: Components | None = None
        #: A Wan or LTX-Video model: diffusers' pipeline, placed and sped up (SVD's parts are ``_parts``).
        self._pipe: Any = None
        self._offload = False
        self.memory: MemoryPlan | None = None
        self.compile_cache: CompileCache | None = None
        self._compiled_shapes: set[tuple[int, ...]] = set()
        #: Whether load() has run its warm-up (a compile at ``warm_up`` size) since the weights were loaded.
        self._warmed = False
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        #: Called with the device and the weights' size in bytes just before they move there, so a host
        #: that keeps its own models on the device (ComfyUI) can make room first.
        self.make_room: Callable[[torch.device, int], None] | None = None

    @property
    def size_rule(self) -> SizeRule:  # type: ignore[override]
        """The sizes the model accepts: its family's multiple within its native area (SVD: 64, 1024x576),
        unless set to another rule (a test's smaller budget)."""
        return self._size_rule or (self.family or SVD).size_rule

    @size_rule.setter
    def size_rule(self, rule: SizeRule) -> None:
        self._size_rule = rule

    def _check_family_settings(self) -> None:
        """Refuse settings the family does not have, once the family is known (at construction, or for a
        hub id after its index is read): SVD's deep-feature interval elsewhere, LoRA files on SVD."""
        family = self.family
        if family is None:
            return
        if family.kind == "svd":
            if self.loras:
                raise InvalidInputError(
                    f"lora: LoRA files apply to Wan and LTX-Video models; {self.model} is Stable Video Diffusion",
                    field="lora",
                    value=self.loras[0].path,
                    allowed="no LoRA for SVD",
                )
            return
        if self._deep_cache_asked:
            raise InvalidInputError(
                f"deep_cache_interval is SVD's fast mode (a UNet's deep features); {family.title}'s fast mode is a "
                "first-block step cache with no interval: drop deep_cache_interval",
                field="deep_cache_interval",
                value=self.speed.deep_cache_interval,
                allowed="not set for " + family.title,
            )
        if self.speed.mode == "fast":
            # The step cache's hooks run eagerly: fast here is the cache alone, no compile.
            self.speed = SpeedPlan(mode="fast", compile=False, fp8=False, deep_cache_interval=0)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return (
            f"LocalEngine(model={self.model!r}, device={self.device}, dtype={str(self.dtype).removeprefix('torch.')}, "
            f"speed={self.speed.mode}, memory={self.memory_mode}, {state})"
        )

    @classmethod
    def shared(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: str | None = None,
        speed: str | None = None,
        memory: str | None = None,
        loras: Sequence[LoRA | tuple[str, float] | str] = (),
    ) -> LocalEngine:
        """One warm engine per (model, device, dtype, speed, memory, LoRAs) in this process, created on first use.

        Keyed by what the settings resolve to, so ``device=None`` on a CPU-only machine and
        ``device="cpu"`` share one engine rather than loading the model twice.
        """
        candidate = cls(model, device=device, dtype=dtype, speed=speed, memory=memory, loras=loras)  # cheap: nothing is loaded yet
        key = (candidate.model, candidate.device, candidate.dtype, candidate.speed, candidate.memory_mode, candidate.loras)
        with cls._shared_lock:
            return cls._shared.setdefault(key, candidate)

    @classmethod
    def from_components(cls, parts: Components, **options: Any) -> LocalEngine:
        """An engine around components built elsewhere (a benchmark's random full-size model), placed now.

        ``options`` are the constructor's (device, dtype, offload, speed, memory, ...). Nothing is compiled
        until :meth:`load` or the first :meth:`generate`.
        """
        engine = cls(parts.source, **options)
        engine._place(parts)
        return engine

    @classmethod
    def from_pipeline(cls, pipe: Any, family: Family | str, **options: Any) -> LocalEngine:
        """An engine around a Wan or LTX-Video pipeline built elsewhere (a benchmark's random full-size
        model, a tiny test model), placed now. ``family`` is a :class:`Family` or its key (``tiny-`` keys
        included); ``options`` are the constructor's."""
        key = family.key if isinstance(family, Family) else family
        engine = cls(key, **options)
        if isinstance(family, Family):
            engine.family = family
        engine._place_pipeline(pipe)
        return engine

    @property
    def settings(self) -> dict[str, str | int | float | bool]:
        """The settings runs use (before loading, those known so far); each Video carries a copy."""
        memory = self.memory
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "speed": self.speed.mode,
            "compiled": self.speed.compile,
            "fp8": self.speed.fp8,
            "deep_cache_interval": self.speed.deep_cache_interval,
            "memory": self.memory_mode,
            "low_memory": bool(memory and memory.low),
            "offload": self._offload,
            "forward_chunking": bool(memory and memory.forward_chunking),
            "family": self.family.key if self.family is not None else "unknown",
            "loras": len(self.loras),
        }

    # ------------------------------------------------------------------ loading

    def load(self, progress: ProgressCallback | None = None) -> None:
        """Load and place the model if not yet done, and compile it when the speed mode compiles.

        Compiling happens here, in a short warm-up run at ``warm_up`` size, so that a server compiles
        before it takes jobs; artefacts of earlier starts are loaded first and new ones saved after.
        Later calls return at once.
        """
        if self.loaded and self._warmed:
            return
        with self._load_lock:
            self._load_weights()
            if not self._warmed:
                self._warm_up(progress)

    def _load_weights(self) -> None:
        """Read and place the model unless it is loaded; the caller holds the load lock."""
        if self.loaded:
            return
        half = self.dtype in (torch.float16, torch.bfloat16)
        ref = self._ref
        if self.family is None and ref.kind == "hub":
            # A hub id outside the short names: its index says which family it is.
            self.family = family_of_folder(download_index(ref.location), ref.location)
            self._check_family_settings()
        family = self.family or SVD
        if family.kind == "svd":
            self._place(load_components(ref.location if ref.kind == "hub" else self.model, half=half))
            return
        if ref.kind == "tiny":
            from .tiny_families import build_tiny_pipeline

            pipe = build_tiny_pipeline(family)
        else:
            folder = download_pipeline(ref.location) if ref.kind == "hub" else Path(ref.location).expanduser()
            pipe = load_pipeline(folder, family, source=self.model, half=half)
        self._place_pipeline(pipe)

    def _place_pipeline(self, pipe: Any) -> None:
        """Plan memory, cast and place a Wan or LTX-Video pipeline, load its LoRAs, apply the speed mode."""
        assert self.family is not None
        weight_bytes = pipeline_weight_bytes(pipe, self.dtype)
        if self.make_room is not None:
            self.make_room(self.device, weight_bytes)
        self.memory = plan_memory(self.memory_mode, self.device, weight_bytes, free_memory(self.device), self._offload_request)
        self._offload = self.memory.offload
        try:
            self._pipe = prepare_pipeline(
                pipe, self.family, device=self.device, dtype=self.dtype, memory=self.memory, speed=self.speed, loras=self.loras
            )
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            self._free_cache()
            raise self._out_of_memory_holding(weight_bytes) from error

    def components(self) -> Components:
        """The loaded SVD model's parts, as placed and sped up for runs (loading them first if needed): for
        tests and benchmarks that hold the engine's model against diffusers' own pipeline."""
        self.load()
        if self._parts is None:
            raise ModelError(f"{self.model} is a {self.family.title if self.family else 'non-SVD'} model: use pipeline()")
        return self._parts

    def pipeline(self) -> Any:
        """The loaded Wan or LTX-Video pipeline, as placed and sped up (loading it first if needed)."""
        self.load()
        if self._pipe is None:
            raise ModelError(f"{self.model} is a Stable Video Diffusion model: use components()")
        return self._pipe

    def _warm_up(self, progress: ProgressCallback | None) -> None:
        """Compile for the warm-up size (a 2-step run on a grey image), logging progress as it goes."""
        if not self.speed.compile or self.warm_up is None or self._parts is None:
            # Wan and LTX-Video compile on their first job, at its own shape: a warm-up at a guessed size
            # and frame count would cost a whole clip and compile for a shape no job may ask for.
            self._warmed = True
            return
        width, height = self.warm_up
        frames = self._parts.default_frames
        cache = self.compile_cache
        where = f"; artefacts cached in {cache.folder}" if cache is not None else ""
        note = f"compiling for {width}x{height}, {frames} frames (speed {self.speed.mode}{where})"
        log.info("%s: a first start on this machine takes minutes, later starts reuse the cache", note)
        started = time.perf_counter()

        def on_progress(fraction: float | None, text: str) -> None:
            log.info("%s: %s (%.0f s)", note, text, time.perf_counter() - started)
            if progress is not None:
                progress(None, f"{note}: {text}")

        if progress is not None:
            progress(None, note)
        image = np.full((height, width, 3), 127, dtype=np.uint8)
        request = VideoRequest(image=image, seed=1, frames=frames, steps=_WARM_UP_STEPS, fit=FitMode.STRICT)
        with self._run_lock:
            self._run(request, on_progress, None)
        self._warmed = True  # only now: a warm-up that failed (out of memory, a compile error) is tried again
        log.info("%s: done in %.0f s", note, time.perf_counter() - started)

    def _place(self, parts: Components) -> None:
        """Plan memory from the weights' size and the free memory, cast and move the parts, apply the speed mode."""
        weight_bytes = _weight_bytes(parts, self.dtype)
        if self.make_room is not None:
            self.make_room(self.device, weight_bytes)
        self.memory = plan_memory(
            self.memory_mode, self.device, weight_bytes, free_memory(self.device), self._offload_request
        )
        self._offload = self.memory.offload
        try:
            placed = place_components(parts, self.device, self.dtype, offload=self._offload)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            self._free_cache()
            raise self._out_of_memory_holding(weight_bytes) from error
        if self.memory.forward_chunking:
            # One frame at a time (dim 0); the temporal blocks chunk over frames whatever the dim.
            placed.unet.enable_forward_chunking(chunk_size=1, dim=0)
        if self.speed.compile:
            folder = self._compile_folder or default_cache_folder()
            key, facts = cache_key(placed, self.device, self.dtype, fp8=self.speed.fp8)
            self.compile_cache = CompileCache(folder, key, facts)
            self.compile_cache.load()
        apply_speed(placed, self.speed)
        self._parts = placed

    def _out_of_memory_holding(self, weight_bytes: int) -> OutOfMemoryError:
        return OutOfMemoryError(
            f"the {self.device} device ran out of memory holding the model's weights "
            f"({weight_bytes / 1024**3:.1f} GiB in {str(self.dtype).removeprefix('torch.')}): try offload "
            "(memory='low', --memory low), a half-precision dtype, or another device"
        )

    @property
    def loaded(self) -> bool:
        """Whether the model's weights are loaded (and hold memory on the device)."""
        return self._parts is not None or self._pipe is not None

    @property
    def is_shared(self) -> bool:
        """Whether this engine came from :meth:`shared` (and so belongs to the whole process)."""
        with self._shared_lock:
            return any(engine is self for engine in self._shared.values())

    def close(self) -> None:
        """Done with this engine. One of your own gives its model's memory back, as :meth:`release` does;
        one from :meth:`shared` stays warm for the process's next caller, as a pooled connection stays
        open (:meth:`release` or :meth:`close_shared` drop its weights). Waits for a run in progress."""
        if not self.is_shared:
            self.release()

    @classmethod
    def close_shared(cls) -> None:
        """Release every shared engine and forget them: the next :meth:`shared` call builds anew. For a
        host that ends its use of img2vid (and tests, which must not leak a model into the next test)."""
        with cls._shared_lock:
            engines = list(cls._shared.values())
            cls._shared.clear()
        for engine in engines:
            engine.release()

    def release(self) -> bool:
        """Drop the loaded model and give its memory back; the next run loads it again.

        Waits for a run in progress to end. True if there was a model to drop.
        """
        with self._load_lock, self._run_lock:
            if not self.loaded:
                return False
            self._parts = None
            self._pipe = None
            self._warmed = False  # a reload compiles (from the caches) and warms up again
            self._compiled_shapes.clear()
        gc.collect()  # the modules hold reference cycles (hooks, configs): collect them before emptying the cache
        self._free_cache()
        return True

    def _free_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ generating

    def generate(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> Video:
        """Make the video; see the README's "The local engine" for what each number means."""
        if self.family is not None:
            _check_request(self.family, request)  # before minutes of loading, where the family is known
        if not self.loaded:
            if progress is not None:
                progress(None, f"loading model {self.model}")  # the first run may download or read gigabytes
            with self._load_lock:
                self._load_weights()  # no warm-up here: this request compiles for its own size
        with self._run_lock:
            return self._run(request, progress, cancel)

    def _run(self, request: VideoRequest, progress: ProgressCallback | None, cancel: CancelCheck | None) -> Video:
        """One generation; the caller holds the run lock."""
        family = self.family or SVD
        _check_request(family, request)
        if self._pipe is not None:
            return self._run_family(family, request, progress, cancel)
        return self._run_svd(request, progress, cancel)

    def _run_family(self, family: Family, request: VideoRequest, progress: ProgressCallback | None, cancel: CancelCheck | None) -> Video:
        """One Wan or LTX-Video generation through diffusers' pipeline."""
        image = request.fitted_image(self.size_rule)
        height, width = image.shape[:2]
        assert family.default_frames is not None
        params = FamilyParams(
            prompt=request.prompt or "",
            negative_prompt=request.negative_prompt if request.negative_prompt is not None else family.default_negative_prompt,
            frames=request.frames if request.frames is not None else family.default_frames,
            steps=request.steps if request.steps is not None else family.default_steps,
            fps=request.fps if request.fps is not None else family.default_fps,
            cfg_scale=request.cfg_scale if request.cfg_scale is not None else family.default_cfg_scale,
        )
        seed = request.seed or secrets.randbelow(MAX_SEED) + 1
        generator = torch.Generator(self.device).manual_seed(seed)
        try:
            run = run_pipeline(self._pipe, family, image, params, generator, self.device, progress, cancel)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            self._free_cache()
            raise OutOfMemoryError(
                f"the {self.device} device ran out of memory at {width}x{height}, {params.frames} frames: try --memory "
                "low (memory='low': model offload and VAE tiling), fewer frames, a smaller image, or a half-precision dtype"
            ) from error
        return Video(frames=run.frames, fps=params.fps, seed=seed, engine_settings=self.settings, timings=run.timings)

    def _run_svd(self, request: VideoRequest, progress: ProgressCallback | None, cancel: CancelCheck | None) -> Video:
        """One Stable Video Diffusion generation through img2vid's own run."""
        parts = self._parts
        assert parts is not None and self.memory is not None
        image = request.fitted_image(self.size_rule)
        height, width = image.shape[:2]
        frames = request.frames if request.frames is not None else parts.default_frames
        seed = request.seed or secrets.randbelow(MAX_SEED) + 1
        fps = request.fps if request.fps is not None else int(ENGINE_DEFAULTS["fps"])
        # Planned inside the lock: free memory is read while no other run of this engine holds any.
        chunk = decode_chunk(
            dtype=self.dtype,
            frames=frames,
            width=width,
            height=height,
            free=free_memory(self.device),
            model_scale=model_scale(parts),
            requested=request.decode_chunk_size,
        )
        if request.decode_chunk_size is None and self.memory.decode_chunk_cap is not None:
            chunk = min(chunk, self.memory.decode_chunk_cap)
        params = SVDParams(
            frames=frames,
            steps=request.steps if request.steps is not None else parts.default_steps,
            fps=fps,
            motion_bucket_id=request.motion_bucket_id if request.motion_bucket_id is not None else DEFAULT_MOTION_BUCKET_ID,
            noise_aug_strength=(
                request.noise_aug_strength if request.noise_aug_strength is not None else ENGINE_DEFAULTS["noise_aug_strength"]
            ),
            min_guidance_scale=(
                request.min_guidance_scale if request.min_guidance_scale is not None else ENGINE_DEFAULTS["min_guidance_scale"]
            ),
            max_guidance_scale=request.cfg_scale if request.cfg_scale is not None else DEFAULT_CFG_SCALE,
            decode_chunk_size=chunk,
        )
        placement = Placement(device=self.device, dtype=self.dtype, offload=self._offload)
        generator = torch.Generator(self.device).manual_seed(seed)
        if self.compile_cache is not None and self._shape_of(params, width, height) not in self._compiled_shapes:
            text = f"compiling for {width}x{height}, {frames} frames (once per size on this machine; cached in {self.compile_cache.folder})"
            log.info("%s", text)
            if progress is not None:
                progress(None, text)
        try:
            run = run_svd(
                parts, image, params, generator, placement, progress, cancel,
                deep_cache_interval=self.speed.deep_cache_interval,
            )
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            self._free_cache()
            raise OutOfMemoryError(
                f"the {self.device} device ran out of memory at {width}x{height}, {frames} frames: try --memory low "
                f"(memory='low'), a smaller decode chunk (decode_chunk_size, --decode-chunk; it was "
                f"{params.decode_chunk_size}), fewer frames, a smaller image, or a half-precision dtype"
            ) from error
        self._save_compiled(params, width, height)
        settings = {**self.settings, "decode_chunk": params.decode_chunk_size}
        return Video(frames=run.frames, fps=fps, seed=seed, engine_settings=settings, timings=run.timings)

    @staticmethod
    def _shape_of(params: SVDParams, width: int, height: int) -> tuple[int, ...]:
        """What compiled code is specialised to: frames, size, guidance on or off, decode chunk."""
        return (params.frames, width, height, int(params.guided), params.decode_chunk_size)

    def _save_compiled(self, params: SVDParams, width: int, height: int) -> None:
        """After the first run at a new shape, save what it compiled, so the next start has it."""
        if self.compile_cache is None:
            return
        shape = self._shape_of(params, width, height)
        if shape not in self._compiled_shapes:
            self._compiled_shapes.add(shape)
            self.compile_cache.save()


def _weight_bytes(parts: Components, dtype: torch.dtype) -> int:
    values = sum(p.numel() for m in (parts.unet, parts.vae, parts.image_encoder) for p in m.parameters())
    return values * torch.finfo(dtype).bits // 8
