"""The SVD denoising run, read top to bottom as numbered steps, like diffusers' pipeline ``__call__``.

It reproduces ``StableVideoDiffusionPipeline`` operation for operation (same random draws from the same
generator, same guidance ramp, same scheduler calls), so that for one model, seed and set of parameters
the frames equal diffusers' within 1/255 in fp32 on a CPU; the tests hold it to that. What it adds:
progress after every denoising step and every decode chunk, cancellation between them, model offload
that moves each component to the device only while it works, deep-feature reuse across steps when the
engine's speed mode asks for it (``deep_cache``), and frames returned as uint8 without a detour through
PIL. It never loads a model and never chooses a device: the engine hands it both.

``run_svd`` is the whole run as numbered calls; each step is a small function below it, named after the
part of diffusers' ``__call__`` it matches (``_encode_image``, ``_encode_vae_image``,
``_get_add_time_ids``, ``prepare_latents``, the denoising loop, ``decode_latents``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base import CancelCheck, ProgressCallback, raise_if_cancelled
from .components import Components
from .deep_cache import new_stepper
from .preprocess import clip_pixels

__all__ = ["SVDParams", "Placement", "SVDRun", "run_svd"]


@dataclass(frozen=True)
class SVDParams:
    """Every number one run needs, already resolved from the request and the model's defaults."""

    frames: int
    steps: int
    fps: int
    motion_bucket_id: int
    noise_aug_strength: float
    min_guidance_scale: float
    max_guidance_scale: float
    decode_chunk_size: int

    @property
    def guided(self) -> bool:
        """Classifier-free guidance runs when any frame's scale exceeds 1, as in diffusers."""
        return max(self.max_guidance_scale, self.min_guidance_scale) > 1.0


@dataclass(frozen=True)
class Placement:
    """Where and in what precision the run happens."""

    device: torch.device
    dtype: torch.dtype
    #: Keep components on the CPU and move each to ``device`` only while it runs.
    offload: bool = False


class _OnDevice:
    """Moves a module to the run's device for a block when offloading, and back to the CPU after."""

    def __init__(self, module: torch.nn.Module, placement: Placement) -> None:
        self.module, self.placement = module, placement

    def __enter__(self) -> Any:  # the diffusers model it wraps (its own attributes, not nn.Module's)
        if self.placement.offload:
            self.module.to(self.placement.device)
        return self.module

    def __exit__(self, *exc: object) -> None:
        if self.placement.offload:
            self.module.to("cpu")
            if self.placement.device.type == "cuda":
                torch.cuda.empty_cache()


@dataclass
class SVDRun:
    """What one run made, and how long its phases took (seconds; the device is synchronised at each
    phase's end, so GPU time is counted where it is spent): benchmarks read these, not progress text."""

    frames: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


class _Phases:
    """Wall-clock seconds per phase, each ended by a device synchronisation (a no-op on the CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self._since = device, {}, time.perf_counter()

    def end(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[name] = now - self._since
        self._since = now


@torch.no_grad()
def run_svd(
    parts: Components,
    image: np.ndarray,
    params: SVDParams,
    generator: torch.Generator,
    placement: Placement,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    *,
    deep_cache_interval: int = 0,
) -> SVDRun:
    """Frames (T×H×W×3 uint8) animating ``image`` (H×W×3 uint8, already at a size the model accepts).

    ``deep_cache_interval`` N > 0 runs the whole UNet only every N steps and reuses its deep features
    in between (``deep_cache``); 0 runs it in full on every step, as diffusers does.
    """
    device = placement.device
    phases = _Phases(device)
    decode_chunks = -(-params.frames // params.decode_chunk_size)
    total_units = params.steps + decode_chunks
    report: Callable[[int, str], None] = (lambda done, text: progress(done / total_units, text)) if progress else (lambda done, text: None)
    raise_if_cancelled(cancel)

    # 1. Guidance: classifier-free guidance runs when any frame's scale exceeds 1, as in diffusers.
    do_cfg = params.guided
    # 2. The image as a tensor in [0, 1] (B=1).
    pixels01 = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(torch.float32).div(255.0).permute(2, 0, 1)[None]
    # 3. Encode the image with CLIP; the unconditional embedding is zeros.
    image_embeddings = _encode_image(parts, pixels01, placement, do_cfg)
    raise_if_cancelled(cancel)
    # 4. Noise-augment the image (the generator's first draw) and encode it with the VAE, once per frame.
    image_latents = _encode_vae_image(parts, pixels01, params, generator, placement, do_cfg, image_embeddings.dtype)
    # 5. Micro-conditioning: the UNet was trained on fps - 1, the motion bucket and the noise strength.
    added_time_ids = _added_time_ids(params, device, image_embeddings.dtype, do_cfg)
    # 6. Timesteps from a fresh scheduler (schedulers keep per-run state).
    scheduler = parts.new_scheduler()
    scheduler.set_timesteps(params.steps, device=device)
    # 7. Initial latents (the generator's second draw).
    height, width = image.shape[:2]
    latents = _initial_latents(parts, scheduler, params.frames, height, width, generator, device, image_embeddings.dtype)
    # 8. Guidance ramps linearly from the first frame (min) to the last (max).
    guidance = torch.linspace(params.min_guidance_scale, params.max_guidance_scale, params.frames).unsqueeze(0)
    guidance = guidance.to(device, latents.dtype)[..., None, None, None]
    phases.end("encode")
    # 9. Denoising loop: one UNet call per step (both CFG halves batched), cancel checked between steps.
    latents = _denoise(
        parts, scheduler, latents, image_latents, image_embeddings, added_time_ids, guidance, do_cfg,
        placement, deep_cache_interval, cancel, report,
    )
    phases.end("denoise")
    # 10. Decode in chunks of frames (the temporal decoder mixes frames within a chunk) to uint8.
    frames = _decode(parts, latents, params, placement, cancel, report)
    phases.end("decode")
    return SVDRun(frames=frames, timings=phases.seconds)


def _encode_image(parts: Components, pixels01: torch.Tensor, placement: Placement, do_cfg: bool) -> torch.Tensor:
    """CLIP image embedding (B×1×D), with zeros ahead of it for the unconditional half under CFG."""
    with _OnDevice(parts.image_encoder, placement) as encoder:
        encoder_dtype = next(encoder.parameters()).dtype
        clip_input = clip_pixels(pixels01.to(placement.device), parts.clip_mean, parts.clip_std).to(dtype=encoder_dtype)
        image_embeddings = encoder(clip_input).image_embeds.unsqueeze(1)
    if do_cfg:
        image_embeddings = torch.cat([torch.zeros_like(image_embeddings), image_embeddings])
    return image_embeddings


def _encode_vae_image(
    parts: Components,
    pixels01: torch.Tensor,
    params: SVDParams,
    generator: torch.Generator,
    placement: Placement,
    do_cfg: bool,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The noise-augmented image's VAE latent, repeated for every frame (B×T×C×h×w); zeros for the
    unconditional half under CFG. Its noise is the run's first draw from ``generator``."""
    from diffusers.utils.torch_utils import randn_tensor

    device = placement.device
    condition = (pixels01 * 2.0 - 1.0).to(device)
    noise = randn_tensor(condition.shape, generator=generator, device=device, dtype=condition.dtype)
    condition = condition + params.noise_aug_strength * noise
    with _OnDevice(parts.vae, placement) as vae:
        encode_dtype = vae.quant_conv.weight.dtype  # fp32 when the encoder was kept upcast for fp16
        image_latents = vae.encode(condition.to(dtype=encode_dtype)).latent_dist.mode()
    if do_cfg:
        image_latents = torch.cat([torch.zeros_like(image_latents), image_latents])
    image_latents = image_latents.to(dtype)
    return image_latents.unsqueeze(1).repeat(1, params.frames, 1, 1, 1)


def _added_time_ids(params: SVDParams, device: torch.device, dtype: torch.dtype, do_cfg: bool) -> torch.Tensor:
    """The UNet's micro-conditioning row: fps - 1, motion bucket id, noise augmentation strength."""
    added_time_ids = torch.tensor([[params.fps - 1, params.motion_bucket_id, params.noise_aug_strength]], dtype=dtype)
    if do_cfg:
        added_time_ids = torch.cat([added_time_ids, added_time_ids])
    return added_time_ids.to(device)


def _initial_latents(
    parts: Components,
    scheduler: object,
    frames: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Gaussian latents at the VAE's scale (the run's second draw), scaled by the scheduler's sigma."""
    from diffusers.utils.torch_utils import randn_tensor

    vae_scale = 2 ** (len(parts.vae.config.block_out_channels) - 1)
    shape = (1, frames, parts.unet.config.in_channels // 2, height // vae_scale, width // vae_scale)
    latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    return latents * scheduler.init_noise_sigma  # type: ignore[attr-defined]


def _denoise(
    parts: Components,
    scheduler: object,
    latents: torch.Tensor,
    image_latents: torch.Tensor,
    image_embeddings: torch.Tensor,
    added_time_ids: torch.Tensor,
    guidance: torch.Tensor,
    do_cfg: bool,
    placement: Placement,
    deep_cache_interval: int,
    cancel: CancelCheck | None,
    report: Callable[[int, str], None],
) -> torch.Tensor:
    """The denoised latents: at each timestep the UNet predicts the noise of both CFG halves in one
    batch, guidance mixes them frame by frame, and the scheduler steps."""
    timesteps = scheduler.timesteps  # type: ignore[attr-defined]
    with _OnDevice(parts.unet, placement) as unet:
        step_unet = new_stepper(unet, deep_cache_interval)
        for index, t in enumerate(timesteps):
            raise_if_cancelled(cancel)
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)  # type: ignore[attr-defined]
            model_input = torch.cat([model_input, image_latents], dim=2)
            noise_pred = step_unet(index, model_input, t, image_embeddings, added_time_ids)
            if do_cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (cond - uncond)
            latents = scheduler.step(noise_pred, t, latents).prev_sample  # type: ignore[attr-defined]
            report(index + 1, f"step {index + 1}/{len(timesteps)}")
    return latents


def _decode(
    parts: Components,
    latents: torch.Tensor,
    params: SVDParams,
    placement: Placement,
    cancel: CancelCheck | None,
    report: Callable[[int, str], None],
) -> np.ndarray:
    """Frames (T×H×W×3 uint8) decoded ``decode_chunk_size`` at a time; each chunk becomes uint8 on the
    device, so only the final bytes cross to the host."""
    num_frames = params.frames
    frames_out: list[torch.Tensor] = []
    with _OnDevice(parts.vae, placement) as vae:
        flat = (1 / vae.config.scaling_factor) * latents.flatten(0, 1)
        decode_dtype = vae.decoder.conv_in.weight.dtype
        for chunk_index, start in enumerate(range(0, num_frames, params.decode_chunk_size)):
            raise_if_cancelled(cancel)
            chunk = flat[start : start + params.decode_chunk_size]
            decoded = vae.decode(chunk.to(decode_dtype), num_frames=chunk.shape[0]).sample
            frames_out.append(
                decoded.float().mul(0.5).add(0.5).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
            )
            end = min(num_frames, start + params.decode_chunk_size)
            report(params.steps + chunk_index + 1, f"decoding frames {start + 1}-{end}/{num_frames}")
    return np.ascontiguousarray(torch.cat(frames_out).numpy())
