"""Single-file SVD checkpoints in the original (ComfyUI) layout: names, round trip, and loading."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from img2vid import VideoRequest  # noqa: E402
from img2vid.engines.local import LocalEngine  # noqa: E402
from img2vid.engines.local.checkpoint import (  # noqa: E402
    ARCHITECTURES,
    _empty_models,
    _plan,
    match_architecture,
    to_single_file,
)
from img2vid.engines.local.components import Components  # noqa: E402
from support.local import small_image  # noqa: E402


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory, tiny_parts: Components) -> tuple[str, dict[str, torch.Tensor]]:
    tensors = to_single_file(tiny_parts.unet, tiny_parts.vae, tiny_parts.image_encoder)
    # A real file also holds things img2vid does not use: they must be ignored.
    tensors["conditioner.embedders.0.open_clip.model.transformer.resblocks.0.ln_1.weight"] = torch.ones(4)
    tensors["conditioner.embedders.3.encoder.encoder.conv_in.weight"] = torch.ones(2, 3, 3, 3)
    path = tmp_path_factory.mktemp("ckpt") / "svd_tiny.safetensors"
    save_file(tensors, str(path))
    return str(path), tensors


def _request() -> VideoRequest:
    return VideoRequest(image=small_image(1), seed=42, frames=2, steps=2)


def test_single_file_checkpoint_gives_the_same_frames_as_the_model_it_was_written_from(tiny_file, tiny_engine) -> None:
    path, _ = tiny_file
    from_file = LocalEngine(path, device="cpu").generate(_request())
    direct = tiny_engine.generate(_request())
    assert np.array_equal(from_file.frames, direct.frames)
    assert from_file.num_frames == 2


def test_half_precision_checkpoint_loads(tiny_file, tmp_path) -> None:
    _, tensors = tiny_file
    path = tmp_path / "svd_tiny_fp16.safetensors"
    save_file({k: v.half() for k, v in tensors.items()}, str(path))
    video = LocalEngine(str(path), device="cpu").generate(_request())
    assert video.frames.shape == (2, 128, 192, 3)


def test_first_stage_without_quant_conv_uses_identity(tiny_file, tmp_path) -> None:
    # The original's video autoencoder has no quant_conv; it must load as the identity, not fail.
    _, tensors = tiny_file
    stripped = {k: v for k, v in tensors.items() if not k.startswith("first_stage_model.quant_conv.")}
    path = tmp_path / "svd_noquant.safetensors"
    save_file(stripped, str(path))
    engine = LocalEngine(str(path), device="cpu")
    quant = engine.components().vae.quant_conv
    assert torch.equal(quant.weight[:, :, 0, 0], torch.eye(quant.weight.shape[0]))
    assert torch.count_nonzero(quant.bias) == 0


def test_tiny_architecture_is_recognised_from_shapes(tiny_file) -> None:
    _, tensors = tiny_file
    arch, problem = match_architecture({k: tuple(v.shape) for k, v in tensors.items()})
    assert arch.name == "tiny" and problem is None
    broken = {k: tuple(v.shape) for k, v in tensors.items() if "output_blocks.0.0" not in k}
    _, problem = match_architecture(broken)
    assert problem is not None and "missing" in problem


def test_full_size_names_are_the_original_svd_layout() -> None:
    svd = next(a for a in ARCHITECTURES if a.name == "svd")
    rows = _plan(svd, _empty_models(svd))
    shapes = {original: shape for _, _, original, _, shape in rows}
    expected = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3),
        "model.diffusion_model.label_emb.0.0.weight": (1280, 768),
        "model.diffusion_model.input_blocks.1.0.time_stack.in_layers.2.weight": (320, 320, 3, 1, 1),
        "model.diffusion_model.input_blocks.1.1.time_stack.0.attn1.to_q.weight": (320, 320),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.middle_block.1.time_pos_embed.0.weight": (5120, 1280),
        "model.diffusion_model.middle_block.2.time_mixer.mix_factor": (1,),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.11.1.proj_out.weight": (320, 320),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.mid.block_1.mix_factor": (1,),
        "first_stage_model.decoder.up.2.block.1.mix_factor": (1,),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "first_stage_model.decoder.up.3.block.2.time_stack.out_layers.3.weight": (512, 512, 3, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.conv_out.time_mix_conv.weight": (3, 3, 3, 1, 1),
        "conditioner.embedders.0.open_clip.model.visual.conv1.weight": (1280, 3, 14, 14),
        "conditioner.embedders.0.open_clip.model.visual.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.0.open_clip.model.visual.proj": (1280, 1024),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == shape, name
    # Every original name is used once (q, k and v share OpenCLIP's fused in_proj by design).
    singles = [original for _, _, original, third, _ in rows if third is None]
    assert len(singles) == len(set(singles))
