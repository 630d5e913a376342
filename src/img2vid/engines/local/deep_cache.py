"""Deep-feature reuse across denoising steps (the DeepCache idea) for diffusers' SVD UNet.

Between neighbouring steps, the UNet's deep, low-resolution features change little; its shallow,
full-resolution blocks carry the detail. So on a "full" step the whole UNet runs and the feature entering
its last up block is kept; on the steps between, only the shallow path runs (time embedding, ``conv_in``,
the first down block, then the last up block fed with that kept feature and fresh skip connections).
With an interval of N, steps 0, N, 2N, ... are full.

:func:`svd_unet_forward` is the UNet's own forward (``UNetSpatioTemporalConditionModel.forward`` in
diffusers 0.3x-0.4x), written out so it can stop at the shallow path; with every step full it equals
diffusers' forward exactly (the tests hold it to that). :class:`DeepCacheStepper` holds one run's kept
feature: make one per run, never share one between runs. Switched off (interval 0), the engine calls the
UNet directly and nothing here runs. This module never compiles, quantises or moves a model.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["svd_unet_forward", "DeepCacheStepper", "PlainStepper", "new_stepper"]


def _call_block(block: Any, sample: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, indicator: torch.Tensor, **extra: Any) -> Any:
    """A down/up block, passing the image embedding only to the blocks with cross-attention (as diffusers)."""
    if getattr(block, "has_cross_attention", False):
        return block(hidden_states=sample, temb=emb, encoder_hidden_states=context, image_only_indicator=indicator, **extra)
    return block(hidden_states=sample, temb=emb, image_only_indicator=indicator, **extra)


def svd_unet_forward(
    unet: Any,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    added_time_ids: torch.Tensor,
    *,
    deep_feature: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's noise prediction (B×F×C×H×W) and the deep feature to keep.

    With ``deep_feature`` given, the deep blocks are skipped and that feature is fed to the last up block.
    """
    height, width = sample.shape[-2:]
    factor = 2**unet.num_upsamplers
    if height % factor or width % factor:
        raise ValueError(f"latents of {height}x{width} are not a multiple of {factor}; the engine fits images to multiples of 64")

    # 1. Time and micro-conditioning embeddings, one per frame.
    timesteps = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
    if timesteps.ndim == 0:
        timesteps = timesteps[None].to(sample.device)
    batch_size, num_frames = sample.shape[:2]
    timesteps = timesteps.expand(batch_size)
    emb = unet.time_embedding(unet.time_proj(timesteps).to(dtype=sample.dtype))
    time_embeds = unet.add_time_proj(added_time_ids.flatten()).reshape((batch_size, -1)).to(emb.dtype)
    emb = emb + unet.add_embedding(time_embeds)
    sample = sample.flatten(0, 1)
    emb = emb.repeat_interleave(num_frames, dim=0, output_size=emb.shape[0] * num_frames)
    context = encoder_hidden_states.repeat_interleave(
        num_frames, dim=0, output_size=encoder_hidden_states.shape[0] * num_frames
    )

    # 2. Shallow path in: conv_in and the first down block.
    sample = unet.conv_in(sample)
    indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)
    residuals: tuple[torch.Tensor, ...] = (sample,)
    sample, block_residuals = _call_block(unet.down_blocks[0], sample, emb, context, indicator)
    residuals += block_residuals
    last_up = unet.up_blocks[-1]
    shallow, deep_residuals = residuals[: len(last_up.resnets)], residuals[len(last_up.resnets) :]

    # 3. Deep path (skipped when a kept feature is given): the other down blocks, the mid block and every
    #    up block but the last.
    if deep_feature is None:
        for block in unet.down_blocks[1:]:
            sample, block_residuals = _call_block(block, sample, emb, context, indicator)
            deep_residuals += block_residuals
        sample = unet.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=context, image_only_indicator=indicator)
        for block in unet.up_blocks[:-1]:
            block_residuals = deep_residuals[-len(block.resnets) :]
            deep_residuals = deep_residuals[: -len(block.resnets)]
            sample = _call_block(block, sample, emb, context, indicator, res_hidden_states_tuple=block_residuals, upsample_size=None)
        deep_feature = sample

    # 4. Shallow path out: the last up block, then the output convolution.
    sample = _call_block(last_up, deep_feature, emb, context, indicator, res_hidden_states_tuple=shallow, upsample_size=None)
    sample = unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))
    return sample.reshape(batch_size, num_frames, *sample.shape[1:]), deep_feature


class PlainStepper:
    """Every step runs the whole UNet through its own forward (deep-feature reuse off)."""

    full_steps = 0

    def __init__(self, unet: Any) -> None:
        self.unet = unet

    def __call__(self, index: int, sample: torch.Tensor, t: torch.Tensor, context: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        self.full_steps += 1
        return self.unet(sample, t, encoder_hidden_states=context, added_time_ids=time_ids, return_dict=False)[0]


class DeepCacheStepper:
    """One run's UNet calls with deep-feature reuse: full on steps 0, N, 2N, ..., shallow in between."""

    def __init__(self, unet: Any, interval: int) -> None:
        if interval < 1:
            raise ValueError(f"deep cache interval must be at least 1, not {interval}")
        self.unet = unet
        self.interval = interval
        self.full_steps = 0
        self._kept: torch.Tensor | None = None

    def __call__(self, index: int, sample: torch.Tensor, t: torch.Tensor, context: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        full = self._kept is None or index % self.interval == 0
        noise, kept = svd_unet_forward(
            self.unet, sample, t, context, time_ids, deep_feature=None if full else self._kept
        )
        if full:
            self.full_steps += 1
            self._kept = kept
        return noise


def new_stepper(unet: Any, deep_cache_interval: int) -> PlainStepper | DeepCacheStepper:
    """The stepper one run uses: plain when the interval is 0, deep-feature reuse otherwise."""
    return DeepCacheStepper(unet, deep_cache_interval) if deep_cache_interval > 0 else PlainStepper(unet)
