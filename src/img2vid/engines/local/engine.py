"""``LocalEngine``: Stable Video Diffusion on this machine's GPU or CPU, behind the engine interface.

It resolves a request's optional numbers against the model's defaults, fits the image, picks the seed,
device, dtype and memory options, and hands one run to :func:`pipeline.run_svd`. A model is loaded once
per process and kept warm (:meth:`LocalEngine.shared`); runs on one engine are serialised by a lock, so
a server's worker threads may share it. It must never print: progress goes through the callback.
"""

from __future__ import annotations

import gc
import secrets
import threading
from collections.abc import Callable
from typing import ClassVar

import torch

from ...errors import InvalidInputError, ServiceError
from ...fitting import MultipleOf
from ...request import MAX_SEED, VideoRequest
from ...video import Video
from ..base import CancelCheck, ProgressCallback
from .components import Components
from .configs import SVD_MAX_PIXELS
from .device import choose_device, choose_dtype, choose_offload, decode_chunk, free_memory
from .models import DEFAULT_MODEL, load_components, model_scale, place_components
from .pipeline import Placement, SVDParams, run_svd

__all__ = ["LocalEngine", "DEFAULT_FPS", "DEFAULT_NOISE_AUG", "DEFAULT_MIN_GUIDANCE"]

_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _is_out_of_memory(error: RuntimeError) -> bool:
    """CUDA's out-of-memory error, or another backend's (MPS raises a plain RuntimeError saying so)."""
    return isinstance(error, _OUT_OF_MEMORY) or "out of memory" in str(error).lower()

DEFAULT_FPS = 7
DEFAULT_NOISE_AUG = 0.02
DEFAULT_MIN_GUIDANCE = 1.0


class LocalEngine:
    """Generates videos with a local SVD model (hub id, diffusers folder, ``.safetensors`` file or ``tiny``).

    ``device`` and ``dtype`` default to the best the machine has (bf16/fp16 on a GPU, fp32 on a CPU);
    ``offload`` defaults to "only if the GPU's free memory is short". The model is loaded on the first
    :meth:`generate` (or :meth:`load`), not at construction, so building an engine is cheap.
    """

    #: Every model img2vid loads is trained at 1024x576; frames are multiples of 64 within that budget.
    size_rule = MultipleOf(64, max_pixels=SVD_MAX_PIXELS)

    _shared: ClassVar[dict[tuple[str, torch.device, torch.dtype], LocalEngine]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: str | None = None,
        offload: bool | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError.for_field("model", model, f"a hub id (like {DEFAULT_MODEL}), a folder, a .safetensors file or 'tiny'")
        self.model = model.strip()
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self._offload_request = offload
        self._parts: Components | None = None
        self._offload = False
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        #: Called with the device and the weights' size in bytes just before they move there, so a host
        #: that keeps its own models on the device (ComfyUI) can make room first.
        self.make_room: Callable[[torch.device, int], None] | None = None

    def __repr__(self) -> str:
        state = "loaded" if self._parts is not None else "not loaded"
        return f"LocalEngine(model={self.model!r}, device={self.device}, dtype={str(self.dtype).removeprefix('torch.')}, {state})"

    @classmethod
    def shared(cls, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None) -> LocalEngine:
        """One warm engine per (model, device, dtype) in this process, created on first use.

        Keyed by the device and dtype they resolve to, so ``device=None`` on a CPU-only machine and
        ``device="cpu"`` share one engine rather than loading the model twice.
        """
        candidate = cls(model, device=device, dtype=dtype)  # cheap: nothing is loaded yet
        key = (candidate.model, candidate.device, candidate.dtype)
        with cls._shared_lock:
            return cls._shared.setdefault(key, candidate)

    @classmethod
    def from_components(
        cls, parts: Components, *, device: str | None = None, dtype: str | None = None, offload: bool | None = None
    ) -> LocalEngine:
        """An engine around components built elsewhere (a benchmark's random full-size model), placed now."""
        engine = cls(parts.source, device=device, dtype=dtype, offload=offload)
        engine._place(parts)
        return engine

    # ------------------------------------------------------------------ loading

    def load(self) -> Components:
        """Load and place the model if not yet done; later calls return the same components."""
        if self._parts is not None:
            return self._parts
        with self._load_lock:
            if self._parts is None:
                self._place(load_components(self.model, half=self.dtype in (torch.float16, torch.bfloat16)))
        return self._parts

    def _place(self, parts: Components) -> None:
        """Decide on offload from the weights' size and the free memory, then cast and move the parts."""
        weight_bytes = _weight_bytes(parts, self.dtype)
        if self.make_room is not None:
            self.make_room(self.device, weight_bytes)
        self._offload = choose_offload(self.device, weight_bytes, free_memory(self.device), self._offload_request)
        try:
            self._parts = place_components(parts, self.device, self.dtype, offload=self._offload)
        except RuntimeError as error:
            if not _is_out_of_memory(error):
                raise
            self._free_cache()
            raise ServiceError(
                f"the {self.device} device ran out of memory holding the model's weights "
                f"({weight_bytes / 1024**3:.1f} GiB in {str(self.dtype).removeprefix('torch.')}): try offload "
                "(offload=True), a half-precision dtype, or another device"
            ) from error

    @property
    def loaded(self) -> bool:
        """Whether the model's weights are loaded (and hold memory on the device)."""
        return self._parts is not None

    def release(self) -> bool:
        """Drop the loaded model and give its memory back; the next run loads it again.

        Waits for a run in progress to end. True if there was a model to drop.
        """
        with self._load_lock, self._run_lock:
            if self._parts is None:
                return False
            self._parts = None
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
        if self._parts is None and progress is not None:
            progress(None, f"loading model {self.model}")  # the first run may download or read gigabytes
        parts = self.load()
        image = request.fitted_image(self.size_rule)
        height, width = image.shape[:2]
        frames = request.frames if request.frames is not None else parts.default_frames
        seed = request.seed or secrets.randbelow(MAX_SEED) + 1
        fps = request.fps if request.fps is not None else DEFAULT_FPS
        with self._run_lock:
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
            params = SVDParams(
                frames=frames,
                steps=request.steps if request.steps is not None else parts.default_steps,
                fps=fps,
                motion_bucket_id=request.motion_bucket_id,
                noise_aug_strength=(
                    request.noise_aug_strength if request.noise_aug_strength is not None else DEFAULT_NOISE_AUG
                ),
                min_guidance_scale=(
                    request.min_guidance_scale if request.min_guidance_scale is not None else DEFAULT_MIN_GUIDANCE
                ),
                max_guidance_scale=request.cfg_scale,
                decode_chunk_size=chunk,
            )
            placement = Placement(device=self.device, dtype=self.dtype, offload=self._offload)
            generator = torch.Generator(self.device).manual_seed(seed)
            try:
                frames_array = run_svd(parts, image, params, generator, placement, progress, cancel)
            except RuntimeError as error:
                if not _is_out_of_memory(error):
                    raise
                self._free_cache()
                raise ServiceError(
                    f"the {self.device} device ran out of memory at {width}x{height}, {frames} frames: try a smaller "
                    f"decode chunk (decode_chunk_size, --decode-chunk; it was {params.decode_chunk_size}), fewer "
                    "frames, a smaller image, or a half-precision dtype"
                ) from error
        return Video(frames=frames_array, fps=fps, seed=seed)


def _weight_bytes(parts: Components, dtype: torch.dtype) -> int:
    values = sum(p.numel() for m in (parts.unet, parts.vae, parts.image_encoder) for p in m.parameters())
    return values * torch.finfo(dtype).bits // 8
