"""``LocalEngine``: Stable Video Diffusion on this machine's GPU or CPU, behind the engine interface.

It resolves a request's optional numbers against the model's defaults, fits the image, picks the seed,
device, dtype, speed and memory settings, and hands one run to :func:`pipeline.run_svd`. A model is
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ...errors import InvalidInputError, ServiceError
from ...fitting import FitMode, MultipleOf
from ...request import ENGINE_DEFAULTS, MAX_SEED, VideoRequest
from ...video import Video
from ..base import CancelCheck, Engine, ProgressCallback
from .compile_cache import CompileCache, cache_key, default_cache_folder
from .components import Components
from .configs import SVD_MAX_PIXELS
from .device import choose_device, choose_dtype, decode_chunk, free_memory
from .memory import MemoryPlan, plan_memory, resolve_memory_mode
from .models import DEFAULT_MODEL, load_components, model_scale, place_components
from .pipeline import Placement, SVDParams, run_svd
from .speed import SpeedPlan, apply_speed, resolve_speed

__all__ = ["LocalEngine", "DEFAULT_WARM_UP"]

log = logging.getLogger("img2vid.engines.local")

_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _is_out_of_memory(error: RuntimeError) -> bool:
    """CUDA's out-of-memory error, or another backend's (MPS raises a plain RuntimeError saying so)."""
    return isinstance(error, _OUT_OF_MEMORY) or "out of memory" in str(error).lower()

#: The size :meth:`LocalEngine.load` compiles for when a speed mode compiles: the protocol's default size.
DEFAULT_WARM_UP = (1024, 576)
#: Steps of the warm-up run: one full UNet step and, in ``fast``, one that reuses the deep features.
_WARM_UP_STEPS = 2


class LocalEngine(Engine):
    """Generates videos with a local SVD model (hub id, diffusers folder, ``.safetensors`` file or ``tiny``).

    ``device`` and ``dtype`` default to the best the machine has (bf16/fp16 on a GPU, fp32 on a CPU).
    ``speed`` is ``eager``, ``compiled`` (the default on CUDA), ``fp8`` or ``fast``; ``memory`` is ``auto``
    (the default: full speed when the GPU's free memory allows, else ``low``) or ``low``; ``offload``
    overrides the model offload either picks. ``compile_cache`` is the folder for compile artefacts
    (default ``$IMG2VID_COMPILE_CACHE`` or the user cache); ``warm_up`` the (width, height) a compiled mode
    compiles for in :meth:`load` (None: compile on the first job instead). Settings are checked at
    construction; the model is loaded on the first :meth:`generate` (or :meth:`load`), and :meth:`close`
    gives its memory back (see :meth:`close` for engines from :meth:`shared`).
    """

    #: Every model img2vid loads is trained at 1024x576; frames are multiples of 64 within that budget.
    size_rule = MultipleOf(64, max_pixels=SVD_MAX_PIXELS)

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
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError.for_field("model", model, f"a hub id (like {DEFAULT_MODEL}), a folder, a .safetensors file or 'tiny'")
        self.model = model.strip()
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self.speed: SpeedPlan = resolve_speed(speed, self.device, deep_cache_interval=deep_cache_interval)
        self.memory_mode = resolve_memory_mode(memory)
        if warm_up is not None:
            if not (isinstance(warm_up, tuple) and len(warm_up) == 2 and all(isinstance(v, int) and v >= 64 and v % 64 == 0 for v in warm_up)):
                raise InvalidInputError.for_field("warm_up", warm_up, "None or a (width, height) pair of multiples of 64")
        self.warm_up = warm_up
        self._compile_folder = Path(compile_cache).expanduser() if compile_cache is not None else None
        self._offload_request = offload
        self._parts: Components | None = None
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

    def __repr__(self) -> str:
        state = "loaded" if self._parts is not None else "not loaded"
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
    ) -> LocalEngine:
        """One warm engine per (model, device, dtype, speed, memory) in this process, created on first use.

        Keyed by what the settings resolve to, so ``device=None`` on a CPU-only machine and
        ``device="cpu"`` share one engine rather than loading the model twice.
        """
        candidate = cls(model, device=device, dtype=dtype, speed=speed, memory=memory)  # cheap: nothing is loaded yet
        key = (candidate.model, candidate.device, candidate.dtype, candidate.speed, candidate.memory_mode)
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

    @property
    def settings(self) -> dict[str, str | int | bool]:
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
        }

    # ------------------------------------------------------------------ loading

    def load(self, progress: ProgressCallback | None = None) -> None:
        """Load and place the model if not yet done, and compile it when the speed mode compiles.

        Compiling happens here, in a short warm-up run at ``warm_up`` size, so that a server compiles
        before it takes jobs; artefacts of earlier starts are loaded first and new ones saved after.
        Later calls return at once.
        """
        if self._parts is not None and self._warmed:
            return
        with self._load_lock:
            self._load_weights()
            if not self._warmed:
                self._warm_up(progress)

    def _load_weights(self) -> None:
        """Read and place the model unless it is loaded; the caller holds the load lock."""
        if self._parts is None:
            self._place(load_components(self.model, half=self.dtype in (torch.float16, torch.bfloat16)))

    def components(self) -> Components:
        """The loaded model's parts, as placed and sped up for runs (loading them first if needed): for
        tests and benchmarks that hold the engine's model against diffusers' own pipeline."""
        self.load()
        assert self._parts is not None
        return self._parts

    def _warm_up(self, progress: ProgressCallback | None) -> None:
        """Compile for the warm-up size (a 2-step run on a grey image), logging progress as it goes."""
        self._warmed = True
        if not self.speed.compile or self.warm_up is None or self._parts is None:
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
            if not _is_out_of_memory(error):
                raise
            self._free_cache()
            raise ServiceError(
                f"the {self.device} device ran out of memory holding the model's weights "
                f"({weight_bytes / 1024**3:.1f} GiB in {str(self.dtype).removeprefix('torch.')}): try offload "
                "(memory='low', --memory low), a half-precision dtype, or another device"
            ) from error
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

    @property
    def loaded(self) -> bool:
        """Whether the model's weights are loaded (and hold memory on the device)."""
        return self._parts is not None

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
            if self._parts is None:
                return False
            self._parts = None
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
        if self._parts is None:
            if progress is not None:
                progress(None, f"loading model {self.model}")  # the first run may download or read gigabytes
            with self._load_lock:
                self._load_weights()  # no warm-up here: this request compiles for its own size
        with self._run_lock:
            return self._run(request, progress, cancel)

    def _run(self, request: VideoRequest, progress: ProgressCallback | None, cancel: CancelCheck | None) -> Video:
        """One generation; the caller holds the run lock."""
        parts = self._parts
        assert parts is not None and self.memory is not None
        image = request.fitted_image(self.size_rule)
        height, width = image.shape[:2]
        frames = request.frames if request.frames is not None else parts.default_frames
        seed = request.seed or secrets.randbelow(MAX_SEED) + 1
        fps = request.fps if request.fps is not None else ENGINE_DEFAULTS["fps"]
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
            motion_bucket_id=request.motion_bucket_id,
            noise_aug_strength=(
                request.noise_aug_strength if request.noise_aug_strength is not None else ENGINE_DEFAULTS["noise_aug_strength"]
            ),
            min_guidance_scale=(
                request.min_guidance_scale if request.min_guidance_scale is not None else ENGINE_DEFAULTS["min_guidance_scale"]
            ),
            max_guidance_scale=request.cfg_scale,
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
            if not _is_out_of_memory(error):
                raise
            self._free_cache()
            raise ServiceError(
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
