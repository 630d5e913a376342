"""Tiny random pipelines of the text-conditioned families, for tests and offline smoke runs.

Each is the family's real diffusers pipeline (``WanImageToVideoPipeline``, ``LTXImageToVideoPipeline``)
with the real component classes at toy width (the sizes follow diffusers' own fast tests), a T5/UMT5 text
encoder of two layers and a tokenizer built in code from a short word list, so nothing is downloaded and a
run takes well under a second on a CPU. Weights are drawn under a fixed seed with the global generator
borrowed and given back, so every process builds the same model. They make noise, not video. The full-size
random models for GPU benchmarks are here too, built from the published configs (``family_configs``).
"""

from __future__ import annotations

from typing import Any

import torch

from ...families import TINY_FAMILIES, TINY_PREFIX, Family
from .family_configs import FULL_SIZE

__all__ = ["TINY_FAMILY_NAMES", "TINY_WORDS", "build_tiny_pipeline", "tiny_tokenizer", "build_random_pipeline"]

#: The words the tiny tokenizer knows; any other word is ``<unk>``.
TINY_WORDS: tuple[str, ...] = (
    "a", "the", "cat", "dog", "bird", "runs", "walks", "flies", "slowly", "quickly", "in", "on", "rain", "snow",
    "sun", "sea", "city", "forest", "blurry", "static", "dark", "bright", "camera", "pans", "zooms",
)
_SEED = 0


#: ``tiny-<family key>`` for each text-conditioned family (the table lives with the families, torch-free).
TINY_FAMILY_NAMES: dict[str, Family] = {name: family for name, family in TINY_FAMILIES.items() if family.kind != "svd"}


def tiny_tokenizer() -> Any:
    """A T5 tokenizer over :data:`TINY_WORDS` (sentencepiece's unigram model, built in code)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -float(i + 1)) for i, w in enumerate(TINY_WORDS)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _seeded(build: Any) -> Any:
    torch.manual_seed(_SEED)
    return build().eval().requires_grad_(False)


def _text_encoder(kind: str, vocab_size: int) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    model_class: Any = UMT5EncoderModel if kind == "wan" else T5EncoderModel
    config_class: Any = UMT5Config if kind == "wan" else T5Config
    config = config_class(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, is_encoder_decoder=False, use_cache=False,
    )
    return _seeded(lambda: model_class(config))


def _wan_transformer(in_channels: int, out_channels: int, image_dim: int | None = None) -> Any:
    from diffusers import WanTransformer3DModel

    return _seeded(lambda: WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, image_dim=image_dim,
    ))


def _wan_scheduler(shift: float) -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)


def _build_wan(family: Family) -> Any:
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    tokenizer = tiny_tokenizer()
    text_encoder = _text_encoder("wan", len(tokenizer))
    key = family.key.removeprefix(TINY_PREFIX)
    if key == "wan2.2-ti2v-5b":
        vae = _seeded(lambda: AutoencoderKLWan(
            base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
            latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
            scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True],
        ))
        return WanImageToVideoPipeline(
            transformer=_wan_transformer(48, 48), vae=vae, scheduler=_wan_scheduler(5.0), text_encoder=text_encoder,
            tokenizer=tokenizer, expand_timesteps=True,
        )
    vae = _seeded(lambda: AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]))
    if key == "wan2.2-i2v-a14b":
        # Two experts with different weights, so a run that uses only one of them shows.
        transformer, transformer_2 = _wan_transformer(36, 16), _wan_transformer(36, 16)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED + 1)
            for parameter in transformer_2.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.02)
        return WanImageToVideoPipeline(
            transformer=transformer, transformer_2=transformer_2, vae=vae, scheduler=_wan_scheduler(5.0),
            text_encoder=text_encoder, tokenizer=tokenizer, boundary_ratio=0.9,
        )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    image_encoder = _seeded(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=1,
    )))
    return WanImageToVideoPipeline(
        transformer=_wan_transformer(36, 16, image_dim=4), vae=vae, scheduler=_wan_scheduler(3.0),
        text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )


def _build_ltx() -> Any:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )

    tokenizer = tiny_tokenizer()
    transformer = _seeded(lambda: LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=2, caption_channels=32,  # two blocks: the first-block cache needs a tail
    ))
    vae = _seeded(lambda: AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1,
        patch_size_t=1, encoder_causal=True, decoder_causal=False,
    ))
    return LTXImageToVideoPipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_text_encoder("ltx", len(tokenizer)), tokenizer=tokenizer,
    )


def build_tiny_pipeline(family: Family) -> Any:
    """The tiny random pipeline of a family (fp32, CPU), the same weights in every process."""
    with torch.random.fork_rng(devices=[]):
        return _build_ltx() if family.kind == "ltx" else _build_wan(family)


def build_random_pipeline(family: Family, device: str | torch.device, dtype: torch.dtype) -> Any:
    """A full-size pipeline of the family with random weights, built on ``device`` in ``dtype`` (for GPU
    benchmarks: speed and memory do not depend on the weights' values, and the real ones cannot be
    downloaded there). The tokenizer is the tiny one: prompts are encoded to the model's full sequence
    length all the same."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    configs = FULL_SIZE[family.key]
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            if family.kind == "ltx":
                return LTXImageToVideoPipeline(
                    transformer=LTXVideoTransformer3DModel(**configs["transformer"]).eval(),
                    vae=AutoencoderKLLTXVideo(**configs["vae"]).eval(),
                    scheduler=FlowMatchEulerDiscreteScheduler(**configs["scheduler"]),
                    text_encoder=T5EncoderModel(T5Config(**configs["text_encoder"])).eval(),
                    tokenizer=tiny_tokenizer(),
                )
            extra: dict[str, Any] = {}
            if "transformer_2" in configs:
                extra = {"transformer_2": WanTransformer3DModel(**configs["transformer"]).eval(), "boundary_ratio": configs["boundary_ratio"]}
            if configs.get("expand_timesteps"):
                extra["expand_timesteps"] = True
            if "image_encoder" in configs:  # Wan 2.1 I2V: CLIP ViT-H/14's image tokens condition every block
                from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

                extra["image_encoder"] = CLIPVisionModelWithProjection(CLIPVisionConfig(**configs["image_encoder"])).eval()
                extra["image_processor"] = CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224})
            return WanImageToVideoPipeline(
                transformer=WanTransformer3DModel(**configs["transformer"]).eval(),
                vae=AutoencoderKLWan(**configs["vae"]).eval(),
                scheduler=UniPCMultistepScheduler(**configs["scheduler"]),  # pyright: ignore[reportArgumentType]  (the class's annotation names one scheduler; Wan runs on UniPC, as its authors ship it)
                text_encoder=UMT5EncoderModel(UMT5Config(**configs["text_encoder"])).eval(),
                tokenizer=tiny_tokenizer(),
                **extra,
            )
    finally:
        torch.set_default_dtype(previous)
