"""Single-file SVD checkpoints (``svd_xt.safetensors``, as ComfyUI users keep them) <-> diffusers names.

diffusers' single-file loading does not cover Stable Video Diffusion, so the renaming lives here, as
one function per component that gives, for every diffusers parameter, the name it has in Stability's
original (generative-models) layout:

    model.diffusion_model.*                         UNet           (input_blocks / middle_block / output_blocks)
    first_stage_model.*                             VAE            (encoder.down / decoder.up, time_stack)
    conditioner.embedders.0.open_clip.model.visual.*  image encoder  (OpenCLIP ViT-H/14)

Because the mapping is a function of the diffusers name, the same table reads a checkpoint and writes
one (:func:`to_single_file`, used by the tests and by anyone who wants a ComfyUI-style file from a
diffusers folder). The architecture is recognised from tensor shapes, never guessed from the file name;
only the default frame count (14 for SVD, 25 for SVD-XT) follows the name, since the two share one
architecture. This module never downloads anything and never reads pickled (``.ckpt``) files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "UNET_PREFIX",
    "VAE_PREFIX",
    "CLIP_PREFIX",
    "unet_key",
    "vae_key",
    "clip_key",
    "Architecture",
    "ARCHITECTURES",
    "match_architecture",
    "from_single_file",
    "to_single_file",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."

# ---------------------------------------------------------------------------------------------- UNet

# Inside a residual block: diffusers' names -> the original's.
_RESNET_LEAVES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _resnet_leaf(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET_LEAVES.get(head, head)}.{tail}"


def _unet_resnet(rest: str) -> str:
    """``spatial_res_block.x`` / ``temporal_res_block.x`` / ``time_mixer.x`` inside one UNet resnet."""
    part, _, leaf = rest.partition(".")
    if part == "spatial_res_block":
        return _resnet_leaf(leaf)
    if part == "temporal_res_block":
        return "time_stack." + _resnet_leaf(leaf)
    return rest  # time_mixer.mix_factor


def _unet_attention(rest: str) -> str:
    rest = rest.replace("temporal_transformer_blocks.", "time_stack.")
    return rest.replace("time_pos_embed.linear_1.", "time_pos_embed.0.").replace(
        "time_pos_embed.linear_2.", "time_pos_embed.2."
    )


_FIXED_UNET = {
    "conv_in.": "input_blocks.0.0.",
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}


def unet_key(key: str, config: Mapping[str, Any]) -> str:
    """The original name of a diffusers ``UNetSpatioTemporalConditionModel`` parameter (without prefix)."""
    for new, old in _FIXED_UNET.items():
        if key.startswith(new):
            return old + key[len(new) :]
    per_block = int(config["layers_per_block"])
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * (per_block + 1) + layer
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_unet_resnet(rest)}"
        return f"input_blocks.{index}.1.{_unet_attention(rest)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        index = 1 + int(m[1]) * (per_block + 1) + per_block
        return f"input_blocks.{index}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_unet_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{_unet_attention(m[1])}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * (per_block + 1) + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_unet_resnet(rest)}"
        return f"output_blocks.{index}.1.{_unet_attention(rest)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        index = block * (per_block + 1) + per_block
        # The upsampler follows the attention in blocks that have one.
        position = 2 if config["up_block_types"][block].startswith("CrossAttn") else 1
        return f"output_blocks.{index}.{position}.conv.{m[2]}"
    raise KeyError(key)


# ----------------------------------------------------------------------------------------------- VAE

_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_attention(rest: str) -> str:
    for new, old in _VAE_ATTENTION.items():
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(rest)


def _vae_leaf(rest: str) -> str:
    return rest.replace("conv_shortcut.", "nin_shortcut.")


def _vae_video_resnet(rest: str) -> str:
    """A decoder resnet: spatial part in place, temporal part under ``time_stack``.

    Unlike the UNet's, the original decoder's blocks hold their blend weight directly (``mix_factor``,
    with the same meaning: sigmoid of it weights the temporal path), not in a ``time_mixer``.
    """
    part, _, leaf = rest.partition(".")
    if part == "spatial_res_block":
        return _vae_leaf(leaf)
    if part == "temporal_res_block":
        return "time_stack." + _resnet_leaf(leaf)
    if rest == "time_mixer.mix_factor":
        return "mix_factor"
    raise KeyError(rest)


def vae_key(key: str, config: Mapping[str, Any]) -> str:
    """The original name of a diffusers ``AutoencoderKLTemporalDecoder`` parameter (without prefix)."""
    levels = len(config["block_out_channels"])
    if key.startswith("quant_conv."):
        return key
    for side in ("encoder", "decoder"):
        for new, old in (("conv_in.", "conv_in."), ("conv_norm_out.", "norm_out."), ("conv_out.", "conv_out.")):
            if key.startswith(f"{side}.{new}"):
                return f"{side}.{old}{key[len(side) + 1 + len(new):]}"
    if key.startswith("decoder.time_conv_out."):
        return "decoder.conv_out.time_mix_conv." + key[len("decoder.time_conv_out.") :]
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        return f"{m[1]}.mid.attn_1.{_vae_attention(m[2])}"
    if m := re.fullmatch(r"encoder\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.mid.block_{int(m[1]) + 1}.{_vae_leaf(m[2])}"
    if m := re.fullmatch(r"decoder\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.mid.block_{int(m[1]) + 1}.{_vae_video_resnet(m[2])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_leaf(m[3])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # The original numbers decoder levels from the finest up; diffusers from the coarsest down.
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_vae_video_resnet(m[3])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    raise KeyError(key)


def _is_vae_attention_weight(key: str) -> bool:
    # The original's attention projections are 1x1 convolutions; diffusers' are linear layers.
    return ".mid_block.attentions.0." in key and key.endswith(".weight") and "group_norm" not in key


# ----------------------------------------------------------------------------------------------- CLIP

_CLIP_FIXED = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
    "visual_projection.weight": "proj",
}
_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


def clip_key(key: str) -> tuple[str, int | None]:
    """The original (OpenCLIP) name of a transformers ``CLIPVisionModelWithProjection`` parameter.

    The second value is which third (q, k, v) of OpenCLIP's fused ``in_proj`` the parameter is, or None.
    """
    if key in _CLIP_FIXED:
        return _CLIP_FIXED[key], None
    m = re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
    if not m:
        raise KeyError(key)
    layer, module, leaf = m[1], m[2], m[3]
    prefix = f"transformer.resblocks.{layer}."
    if module.startswith("self_attn.") and module[len("self_attn.") :] in _QKV:
        return f"{prefix}attn.in_proj_{leaf}", _QKV[module[len("self_attn.") :]]
    if module in _CLIP_LAYER:
        return f"{prefix}{_CLIP_LAYER[module]}.{leaf}", None
    raise KeyError(key)


# ------------------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class Architecture:
    """A known model shape: the three component configs, and the frame count its name implies."""

    name: str
    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    clip: Mapping[str, Any]


def _architectures() -> tuple[Architecture, ...]:
    from .configs import SVD_CLIP, SVD_UNET, SVD_VAE, TINY_CLIP, TINY_UNET, TINY_VAE

    return (
        Architecture("svd", SVD_UNET, SVD_VAE, SVD_CLIP),
        Architecture("tiny", TINY_UNET, TINY_VAE, TINY_CLIP),
    )


ARCHITECTURES = _architectures()


def _empty_models(arch: Architecture) -> tuple[Any, Any, Any]:
    """The three models with no storage (meta device): shapes to compare, and shells to load into."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**arch.unet)
        vae = AutoencoderKLTemporalDecoder(**arch.vae)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**arch.clip))
    return unet, vae, clip


def _original_shape(key: str, shape: torch.Size, source: str) -> tuple[int, ...]:
    if source == "clip" and key == "visual_projection.weight":
        return (shape[1], shape[0])
    if source == "vae" and _is_vae_attention_weight(key):
        return (*shape, 1, 1)
    return tuple(shape)


def _plan(arch: Architecture, models: tuple[Any, Any, Any]) -> list[tuple[str, str, str, int | None, tuple[int, ...]]]:
    """(component, diffusers key, original key, q/k/v index, expected original shape) for every parameter."""
    unet, vae, clip = models
    rows: list[tuple[str, str, str, int | None, tuple[int, ...]]] = []
    for key, tensor in unet.state_dict().items():
        rows.append(("unet", key, UNET_PREFIX + unet_key(key, arch.unet), None, tuple(tensor.shape)))
    for key, tensor in vae.state_dict().items():
        rows.append(("vae", key, VAE_PREFIX + vae_key(key, arch.vae), None, _original_shape(key, tensor.shape, "vae")))
    for key, tensor in clip.state_dict().items():
        if key.endswith("position_ids"):
            continue
        original, third = clip_key(key)
        shape = _original_shape(key, tensor.shape, "clip")
        if third is not None:
            shape = (3 * shape[0], *shape[1:])
        rows.append(("clip", key, CLIP_PREFIX + original, third, shape))
    return rows


def match_architecture(shapes: Mapping[str, tuple[int, ...]]) -> tuple[Architecture, str | None]:
    """The known architecture whose every tensor is in ``shapes`` with the right shape.

    Returns the architecture and None, or the nearest one and a line saying what does not fit.
    """
    best: tuple[int, Architecture, str] | None = None
    for arch in ARCHITECTURES:
        problems = []
        for _component, _, original, _, shape in _plan(arch, _empty_models(arch)):
            if original == VAE_PREFIX + "quant_conv.weight" or original == VAE_PREFIX + "quant_conv.bias":
                continue  # optional: the original's first stage may have none (identity)
            if original not in shapes:
                problems.append(f"{original} is missing")
            elif tuple(shapes[original]) != shape:
                problems.append(f"{original} has shape {tuple(shapes[original])}, expected {shape}")
        if not problems:
            return arch, None
        if best is None or len(problems) < best[0]:
            best = (len(problems), arch, f"{len(problems)} tensors do not fit, e.g. {problems[0]}")
    assert best is not None
    return best[1], best[2]


def from_single_file(tensors: Mapping[str, torch.Tensor], arch: Architecture) -> tuple[Any, Any, Any]:
    """UNet, VAE and image encoder built from an original-layout state dict (already matched to ``arch``)."""
    models = _empty_models(arch)
    states: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "vae": {}, "clip": {}}
    for component, key, original, third, shape in _plan(arch, models):
        if original not in tensors and original.startswith(VAE_PREFIX + "quant_conv."):
            channels = shape[0]
            tensor = torch.eye(channels).reshape(channels, channels, 1, 1) if original.endswith("weight") else torch.zeros(channels)
        else:
            tensor = tensors[original]
        if third is not None:
            tensor = tensor.chunk(3, dim=0)[third]
        if component == "clip" and key == "visual_projection.weight":
            tensor = tensor.t()
        if component == "vae" and _is_vae_attention_weight(key):
            tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])
        states[component][key] = tensor.contiguous()
    unet, vae, clip = models
    unet.load_state_dict(states["unet"], strict=True, assign=True)
    vae.load_state_dict(states["vae"], strict=True, assign=True)
    # position_ids is a buffer made at construction; on meta it must be rebuilt.
    clip_state = clip.state_dict()
    for key in clip_state:
        if key.endswith("position_ids") and key not in states["clip"]:
            states["clip"][key] = torch.arange(clip_state[key].shape[-1]).expand(clip_state[key].shape)
    clip.load_state_dict(states["clip"], strict=False, assign=True)
    _rebuild_meta_buffers(clip)
    return unet, vae, clip


def _rebuild_meta_buffers(model: torch.nn.Module) -> None:
    """Non-persistent buffers made on the meta device have no data; recreate the ones CLIP has."""
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer.is_meta:
                if name == "position_ids":
                    module.register_buffer(name, torch.arange(buffer.shape[-1]).expand(buffer.shape), persistent=False)
                else:
                    raise RuntimeError(f"cannot rebuild buffer {name}")


def to_single_file(unet: Any, vae: Any, clip: Any) -> dict[str, torch.Tensor]:
    """The original-layout state dict of three diffusers/transformers models (the inverse of loading)."""
    arch = Architecture("given", dict(unet.config), dict(vae.config), clip.config.to_dict())
    out: dict[str, torch.Tensor] = {}
    states = {"unet": unet.state_dict(), "vae": vae.state_dict(), "clip": clip.state_dict()}
    thirds: dict[str, list[torch.Tensor | None]] = {}
    for component, key, original, third, _ in _plan(arch, (unet, vae, clip)):
        tensor = states[component][key].detach().cpu()
        if component == "clip" and key == "visual_projection.weight":
            tensor = tensor.t()
        if component == "vae" and _is_vae_attention_weight(key):
            tensor = tensor[:, :, None, None]
        if third is not None:
            thirds.setdefault(original, [None, None, None])[third] = tensor
            continue
        out[original] = tensor.contiguous()
    for original, parts in thirds.items():
        out[original] = torch.cat([p for p in parts if p is not None], dim=0).contiguous()
    return out
