"""Full-size architectures of the text-conditioned families, as plain config dicts, for GPU benchmarks.

Each family maps component names to the keyword arguments of the class that builds it (diffusers
``WanTransformer3DModel``, ``AutoencoderKLWan``, ``UniPCMultistepScheduler``, ``LTXVideoTransformer3DModel``,
``AutoencoderKLLTXVideo``, ``FlowMatchEulerDiscreteScheduler``; transformers ``UMT5Config``, ``T5Config``,
``CLIPVisionConfig``), plus a few pipeline settings (``expand_timesteps``, ``boundary_ratio``, the
``transformer_2`` marker: a second expert of the same architecture). The numbers are the published ones; each
component says where they come from. Weights are not described here: ``tiny_families.build_random_pipeline``
draws them at random.

Data only: this module must never import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FULL_SIZE"]

# --- text encoders -------------------------------------------------------------------------------------

# google/umt5-xxl's config.json (the encoder half; Wan's authors ship it as models_t5_umt5-xxl-enc-bf16.pth,
# wan/configs/shared_config.py: t5_model 'umt5_xxl', text_len 512). About 5.7B parameters.
_UMT5_XXL: dict[str, Any] = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": False,
    "use_cache": False,
}

# google/t5-v1_1-xxl's config.json (the encoder half), the text encoder diffusers'
# scripts/convert_ltx_to_diffusers.py puts into every LTX-Video pipeline. About 4.8B parameters.
_T5_V1_1_XXL: dict[str, Any] = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": False,
    "use_cache": False,
}

# --- Wan ------------------------------------------------------------------------------------------------

# The parts every Wan transformer shares: diffusers scripts/convert_wan_to_diffusers.py,
# get_transformer_config (Wan's wan/configs/*.py: patch_size (1, 2, 2), freq_dim 256, qk_norm, cross_attn_norm,
# eps 1e-6, text_dim = umt5-xxl's d_model); rope_max_seq_len is WanTransformer3DModel's default.
_WAN_TRANSFORMER_COMMON: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
    "pos_embed_seq_len": None,
}

# Wan 2.2 TI2V-5B: convert_wan_to_diffusers.py "Wan2.2-TI2V-5B" (Wan2.2 wan/configs/wan_ti2v_5B.py: dim 3072
# = 24 heads x 128, ffn_dim 14336, 30 layers). 48 latent channels in and out (the Wan 2.2 VAE's z_dim).
_WAN22_TI2V_5B_TRANSFORMER: dict[str, Any] = {
    **_WAN_TRANSFORMER_COMMON,
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "in_channels": 48,
    "out_channels": 48,
    "ffn_dim": 14336,
    "num_layers": 30,
    "image_dim": None,
    "added_kv_proj_dim": None,
}

# The 14B image-to-video transformer: convert_wan_to_diffusers.py "Wan2.2-I2V-14B-720p" (each of the two
# experts) and "Wan-I2V-14B-480p"/"-720p" (Wan 2.1, which adds the CLIP image branch below); Wan's
# wan_i2v_A14B.py / Wan2.1 wan_i2v_14B.py: dim 5120 = 40 heads x 128, ffn_dim 13824, 40 layers. 36 channels
# in: 16 noisy latents, 4 mask channels and 16 latents of the conditioning video.
_WAN_I2V_14B_TRANSFORMER: dict[str, Any] = {
    **_WAN_TRANSFORMER_COMMON,
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 36,
    "out_channels": 16,
    "ffn_dim": 13824,
    "num_layers": 40,
    "image_dim": None,
    "added_kv_proj_dim": None,
}

# Wan 2.1 I2V-14B (480P and 720P share the architecture): the 2.1 transformer also attends to the CLIP
# image tokens (image_dim 1280: ViT-H/14's width; added_kv_proj_dim 5120: the model's width).
_WAN21_I2V_14B_TRANSFORMER: dict[str, Any] = {**_WAN_I2V_14B_TRANSFORMER, "image_dim": 1280, "added_kv_proj_dim": 5120}

# The Wan 2.1 VAE (Wan2.1_VAE.pth; also Wan 2.2 A14B's): AutoencoderKLWan's defaults, which
# convert_wan_to_diffusers.py's convert_vae() builds; 8x spatial, 4x temporal compression, 16 channels.
_WAN21_VAE: dict[str, Any] = {
    "base_dim": 96,
    "decoder_base_dim": None,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "latents_mean": [
        -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
    ],
    "latents_std": [
        2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
        3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
    ],
    "is_residual": False,
    "in_channels": 3,
    "out_channels": 3,
    "patch_size": None,
    "scale_factor_temporal": 4,
    "scale_factor_spatial": 8,
}

# The Wan 2.2 VAE (Wan2.2_VAE.pth, TI2V-5B's): convert_wan_to_diffusers.py's vae22_diffusers_config; 16x
# spatial (a 2x2 pixel patch, 12 channels in and out, then 8x), 4x temporal compression, 48 channels, a wider
# decoder. dim_mult, num_res_blocks and temperal_downsample are the class defaults that config keeps.
_WAN22_VAE: dict[str, Any] = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "latents_mean": [
        -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
        -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
        -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
        -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
        -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
        0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
    ],
    "latents_std": [
        0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
        0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
        0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
        0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
        0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
        0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
    ],
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_temporal": 4,
    "scale_factor_spatial": 16,
}


def _wan_scheduler(flow_shift: float) -> dict[str, Any]:
    """UniPC on flow sigmas, as convert_wan_to_diffusers.py builds it; the shift is the model's own."""
    return {
        "num_train_timesteps": 1000,
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": flow_shift,
    }


# The CLIP image encoder of Wan 2.1 I2V: laion/CLIP-ViT-H-14-laion2B-s32B-b79K's vision_config (what
# convert_wan_to_diffusers.py loads; Wan2.1 wan/configs/wan_i2v_14B.py: clip_xlm_roberta_vit_h_14). The
# pipeline reads the penultimate hidden state (1280 wide, the transformer's image_dim). About 0.63B parameters.
_CLIP_VIT_H_14: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1024,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}

# --- LTX-Video ----------------------------------------------------------------------------------------

# LTX-Video 2B (0.9.0 to 0.9.5 share it): diffusers scripts/convert_ltx_to_diffusers.py,
# get_transformer_config (any version but 0.9.7's 13B). About 1.9B parameters.
_LTX_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 64,
    "cross_attention_dim": 2048,
    "num_layers": 28,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 4096,
    "attention_bias": True,
    "attention_out_bias": True,
}

# The LTX-Video 0.9.1 VAE (the timestep-conditioned decoder that Lightricks/LTX-Video ships in diffusers
# form): convert_ltx_to_diffusers.py, get_vae_config("0.9.1"). 32x spatial (a 4x4 pixel patch, then 8x),
# 8x temporal compression, 128 channels.
_LTX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("LTXVideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 3, 3, 3, 4),
    "decoder_layers_per_block": (5, 6, 7, 8),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (True, True, True, False),
    "downsample_type": ("conv", "conv", "conv", "conv"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "scaling_factor": 1.0,
    "encoder_causal": True,
    "decoder_causal": False,
}

# Lightricks/LTX-Video's scheduler/scheduler_config.json, as convert_ltx_to_diffusers.py writes it for the
# 0.9.0/0.9.1 pipelines: the shift grows with the latent sequence length (0.95 at 1024 tokens, 2.05 at 4096).
_LTX_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
    "invert_sigmas": False,
}

#: Family key -> component name -> config (constructor keyword arguments), or a pipeline setting.
FULL_SIZE: dict[str, dict[str, Any]] = {
    "wan2.2-ti2v-5b": {
        "transformer": _WAN22_TI2V_5B_TRANSFORMER,
        "vae": _WAN22_VAE,
        "text_encoder": _UMT5_XXL,
        # Wan2.2 wan/configs/wan_ti2v_5B.py: sample_shift 5.0 (convert_wan_to_diffusers.py: 5.0 for TI2V too).
        "scheduler": _wan_scheduler(5.0),
        # The first latent frame is the clean image latent, with its own per-token timestep.
        "expand_timesteps": True,
    },
    "wan2.2-i2v-a14b": {
        "transformer": _WAN_I2V_14B_TRANSFORMER,
        # A second expert of the same architecture (the low-noise one); the builder reuses "transformer".
        "transformer_2": True,
        # Wan2.2 wan/configs/wan_i2v_A14B.py: boundary 0.900 (the pipeline convert_wan_to_diffusers.py builds too).
        "boundary_ratio": 0.9,
        "vae": _WAN21_VAE,
        "text_encoder": _UMT5_XXL,
        # Wan2.2 wan/configs/wan_i2v_A14B.py: sample_shift 5.0.
        "scheduler": _wan_scheduler(5.0),
    },
    "wan2.1-i2v-14b-480p": {
        "transformer": _WAN21_I2V_14B_TRANSFORMER,
        "vae": _WAN21_VAE,
        "text_encoder": _UMT5_XXL,
        "image_encoder": _CLIP_VIT_H_14,
        # Wan2.1 generate.py: sample_shift 3.0 for i2v at 832*480.
        "scheduler": _wan_scheduler(3.0),
    },
    "wan2.1-i2v-14b-720p": {
        "transformer": _WAN21_I2V_14B_TRANSFORMER,
        "vae": _WAN21_VAE,
        "text_encoder": _UMT5_XXL,
        "image_encoder": _CLIP_VIT_H_14,
        # Wan2.1 generate.py: sample_shift 5.0 at every other size (1280*720 here).
        "scheduler": _wan_scheduler(5.0),
    },
    "ltx-video": {
        "transformer": _LTX_TRANSFORMER,
        "vae": _LTX_VAE,
        "text_encoder": _T5_V1_1_XXL,
        "scheduler": _LTX_SCHEDULER,
    },
}
