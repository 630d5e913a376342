"""The model families img2vid runs, their rules and defaults: one table, each figure with its source.

Stable Video Diffusion, Wan (2.1 I2V-14B, 2.2 I2V-A14B, 2.2 TI2V-5B) and LTX-Video share one request shape
and one engine; what differs between them is small and lives here: which fields a family takes (a prompt,
SVD's motion bucket), its frame-count rule (Wan 4k+1, LTX 8k+1), the multiple its sides must be, the area
it was trained at, and its defaults. The engine, the CLI, the server and the nodes all read this table and
none keeps a copy. Short names (``wan2.2-ti2v-5b``, ``ltx-video``, ``svd-xt``) map to the official diffusers
repositories here too.

This module is part of the light core: it must never import torch, diffusers or anything heavy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .errors import InvalidInputError
from .fitting import MultipleOf, SizeRule

__all__ = [
    "Family",
    "FramesRule",
    "FAMILIES",
    "SHORT_NAMES",
    "SVD",
    "TINY_PREFIX",
    "TINY_FAMILIES",
    "tiny_family",
    "family_for_short_name",
    "family_for_pipeline",
    "families_text",
    "check_family_fields",
]

#: Fields only Stable Video Diffusion reads (its micro-conditioning and its frame-chunked decoder).
SVD_ONLY_FIELDS: tuple[str, ...] = ("motion_bucket_id", "noise_aug_strength", "min_guidance_scale", "decode_chunk_size")
#: Fields only the text-conditioned families read.
PROMPT_FIELDS: tuple[str, ...] = ("prompt", "negative_prompt")

#: A tiny random model of a family is named ``tiny-<family key>`` (``tiny`` alone is SVD's).
TINY_PREFIX = "tiny-"

# The negative prompt Wan's authors ship as the default for every Wan model (Wan2.1/Wan2.2 repositories,
# wan/configs/shared_config.py, ``sample_neg_prompt``), used by the diffusers model cards' examples too.
_WAN_NEGATIVE = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，"
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"
    "三条腿，背景人很多，倒着走"
)
# LTX-Video's recommended negative prompt (diffusers' LTXImageToVideoPipeline docs and the model card).
_LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"


@dataclass(frozen=True)
class FramesRule:
    """Frame counts a family accepts: ``step * k + 1`` (Wan 4k+1, LTX 8k+1); ``step`` 1 accepts any count."""

    step: int = 1

    def allows(self, frames: int) -> bool:
        return self.step == 1 or frames % self.step == 1

    def nearest(self, frames: int) -> tuple[int, int]:
        """The valid counts just below and just above ``frames`` (the lower one at least 1)."""
        below = max(1, (frames - 1) // self.step * self.step + 1)
        above = below + self.step if below < frames else below
        return below, above

    def describe(self) -> str:
        if self.step == 1:
            return "any count"
        examples = ", ".join(str(self.step * k + 1) for k in range(1, 4))
        return f"{self.step}k+1 frames ({examples}, ...)"


@dataclass(frozen=True)
class Family:
    """One family's rules and defaults; ``sources`` says where each default comes from."""

    #: The short name, also the key of :data:`FAMILIES` (``wan2.2-ti2v-5b``).
    key: str
    #: The name people know it by, for messages ("Wan 2.2 TI2V-5B").
    title: str
    #: ``svd``, ``wan`` or ``ltx``: which run the engine uses.
    kind: str
    #: The official diffusers repository the short name downloads.
    hub_repo: str
    takes_prompt: bool
    frames_rule: FramesRule
    #: Both sides of a frame must be multiples of this (the VAE's downsampling times the patch size).
    size_multiple: int
    #: (width, height) the model was trained at; a larger image is scaled down to this area.
    native_size: tuple[int, int]
    #: ``None`` where the model's own config says (SVD: 14 or 25 frames, by its UNet's config).
    default_frames: int | None
    default_steps: int
    default_fps: int
    default_cfg_scale: float
    default_negative_prompt: str | None
    sources: Mapping[str, str] = field(default_factory=dict[str, str])

    @property
    def size_rule(self) -> SizeRule:
        """The sizes a run accepts: SVD's multiples of 64 within its 1024x576 budget (enlarging smaller
        images, as it always has); the text families' multiples within their native area, never enlarging."""
        width, height = self.native_size
        return MultipleOf(self.size_multiple, max_pixels=width * height, upscale=self.kind == "svd")

    @property
    def fields(self) -> tuple[str, ...]:
        """The request fields this family reads, besides the image."""
        common = ("seed", "cfg_scale", "frames", "steps", "fps")
        return common + (PROMPT_FIELDS if self.takes_prompt else SVD_ONLY_FIELDS)

    def check_frames(self, frames: int) -> None:
        """Refuse a frame count outside the rule, naming the rule and the two nearest valid counts."""
        if self.frames_rule.allows(frames):
            return
        below, above = self.frames_rule.nearest(frames)
        raise InvalidInputError(
            f"frames is {frames}; {self.title} makes {self.frames_rule.describe()}: the nearest are {below} and {above}",
            field="frames",
            value=frames,
            allowed=self.frames_rule.describe(),
        )


_DIFFUSERS = "diffusers 0.42 {cls}.__call__ default"

SVD = Family(
    key="svd-xt",
    title="Stable Video Diffusion",
    kind="svd",
    hub_repo="stabilityai/stable-video-diffusion-img2vid-xt",
    takes_prompt=False,
    frames_rule=FramesRule(1),
    size_multiple=64,
    native_size=(1024, 576),
    default_frames=None,
    default_steps=25,
    default_fps=7,
    default_cfg_scale=1.8,
    default_negative_prompt=None,
    sources={
        "native_size": "SVD model card: trained at 1024x576",
        "default_frames": "the UNet's config (num_frames: 14 for SVD, 25 for SVD-XT)",
        "default_steps": _DIFFUSERS.format(cls="StableVideoDiffusionPipeline"),
        "default_fps": "SVD model card's examples (fps 7); diffusers' default is also 7",
        "default_cfg_scale": "Stability's image-to-video API default (cfg_scale 1.8)",
    },
)

WAN22_TI2V_5B = Family(
    key="wan2.2-ti2v-5b",
    title="Wan 2.2 TI2V-5B",
    kind="wan",
    hub_repo="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    takes_prompt=True,
    frames_rule=FramesRule(4),
    size_multiple=32,
    native_size=(1280, 704),
    default_frames=121,
    default_steps=50,
    default_fps=24,
    default_cfg_scale=5.0,
    default_negative_prompt=_WAN_NEGATIVE,
    sources={
        "frames_rule": "Wan 2.2 VAE: 4x temporal compression (scale_factor_temporal 4)",
        "size_multiple": "Wan 2.2 VAE: 16x spatial compression (scale_factor_spatial 16) times the patch (2)",
        "native_size": "Wan 2.2 README: TI2V-5B makes 720P as 1280*704",
        "default_frames": "Wan 2.2 README / generate.py: 121 frames for ti2v-5B",
        "default_steps": "Wan 2.2 wan/configs/wan_ti2v_5B.py: sample_steps 50",
        "default_fps": "Wan 2.2 wan/configs/wan_ti2v_5B.py: sample_fps 24",
        "default_cfg_scale": "Wan 2.2 wan/configs/wan_ti2v_5B.py: sample_guide_scale 5.0",
        "default_negative_prompt": "Wan 2.2 wan/configs/shared_config.py: sample_neg_prompt",
    },
)

WAN22_I2V_A14B = Family(
    key="wan2.2-i2v-a14b",
    title="Wan 2.2 I2V-A14B",
    kind="wan",
    hub_repo="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    takes_prompt=True,
    frames_rule=FramesRule(4),
    size_multiple=16,
    native_size=(1280, 720),
    default_frames=81,
    default_steps=40,
    default_fps=16,
    default_cfg_scale=3.5,
    default_negative_prompt=_WAN_NEGATIVE,
    sources={
        "frames_rule": "Wan 2.1 VAE: 4x temporal compression",
        "size_multiple": "Wan 2.1 VAE: 8x spatial compression times the patch (2)",
        "native_size": "Wan 2.2 README: I2V-A14B makes 480P and 720P (1280*720)",
        "default_frames": "Wan 2.2 wan/configs/wan_i2v_A14B.py: frame_num 81",
        "default_steps": "Wan 2.2 wan/configs/wan_i2v_A14B.py: sample_steps 40",
        "default_fps": "Wan 2.2 wan/configs/wan_i2v_A14B.py: sample_fps 16",
        "default_cfg_scale": "Wan 2.2 wan/configs/wan_i2v_A14B.py: sample_guide_scale (3.5, 3.5)",
        "default_negative_prompt": "Wan 2.2 wan/configs/shared_config.py: sample_neg_prompt",
    },
)

WAN21_I2V_14B_480P = Family(
    key="wan2.1-i2v-14b-480p",
    title="Wan 2.1 I2V-14B 480P",
    kind="wan",
    hub_repo="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    takes_prompt=True,
    frames_rule=FramesRule(4),
    size_multiple=16,
    native_size=(832, 480),
    default_frames=81,
    default_steps=40,
    default_fps=16,
    default_cfg_scale=5.0,
    default_negative_prompt=_WAN_NEGATIVE,
    sources={
        "frames_rule": "Wan 2.1 VAE: 4x temporal compression",
        "size_multiple": "Wan 2.1 VAE: 8x spatial compression times the patch (2)",
        "native_size": "Wan 2.1 README: the 480P model makes 832*480",
        "default_frames": "Wan 2.1 wan/configs/shared_config.py: frame_num 81",
        "default_steps": "Wan 2.1 generate.py: sample_steps 40 for i2v",
        "default_fps": "Wan 2.1 wan/configs/shared_config.py: sample_fps 16",
        "default_cfg_scale": "Wan 2.1 generate.py: sample_guide_scale 5.0",
        "default_negative_prompt": "Wan 2.1 wan/configs/shared_config.py: sample_neg_prompt",
    },
)

WAN21_I2V_14B_720P = replace(
    WAN21_I2V_14B_480P,
    key="wan2.1-i2v-14b-720p",
    title="Wan 2.1 I2V-14B 720P",
    hub_repo="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
    native_size=(1280, 720),
    sources={**WAN21_I2V_14B_480P.sources, "native_size": "Wan 2.1 README: the 720P model makes 1280*720"},
)

LTX_VIDEO = Family(
    key="ltx-video",
    title="LTX-Video",
    kind="ltx",
    hub_repo="Lightricks/LTX-Video",
    takes_prompt=True,
    frames_rule=FramesRule(8),
    size_multiple=32,
    native_size=(704, 480),
    default_frames=121,
    default_steps=50,
    default_fps=25,
    default_cfg_scale=3.0,
    default_negative_prompt=_LTX_NEGATIVE,
    sources={
        "frames_rule": "LTX-Video model card: frames divisible by 8, plus 1 (the VAE's 8x temporal compression)",
        "size_multiple": "LTX-Video model card: resolutions divisible by 32 (the VAE's 32x spatial compression)",
        "native_size": "diffusers' LTX-Video image-to-video example: 704x480",
        "default_frames": "LTX-Video model card: 121 frames at 704x480 in its examples",
        "default_steps": _DIFFUSERS.format(cls="LTXImageToVideoPipeline"),
        "default_fps": _DIFFUSERS.format(cls="LTXImageToVideoPipeline") + " (frame_rate 25)",
        "default_cfg_scale": _DIFFUSERS.format(cls="LTXImageToVideoPipeline") + " (guidance_scale 3)",
        "default_negative_prompt": "diffusers' LTX-Video image-to-video example",
    },
)

#: Every family, by key (its short name).
FAMILIES: dict[str, Family] = {
    family.key: family for family in (SVD, WAN22_TI2V_5B, WAN22_I2V_A14B, WAN21_I2V_14B_480P, WAN21_I2V_14B_720P, LTX_VIDEO)
}

#: Short name -> (hub repository, family). The family keys, and the SVD releases by their names.
SHORT_NAMES: dict[str, tuple[str, Family]] = {
    **{key: (family.hub_repo, family) for key, family in FAMILIES.items()},
    "svd": ("stabilityai/stable-video-diffusion-img2vid", SVD),
    "svd-xt-1.1": ("stabilityai/stable-video-diffusion-img2vid-xt-1-1", SVD),
}


def tiny_family(family: Family) -> Family:
    """The family's rules with defaults a tiny random model meets in a second: 9 frames (valid for 4k+1
    and 8k+1 alike), 2 steps. SVD's tiny model keeps its own frame count (its UNet's, 2)."""
    if family.kind == "svd":
        return replace(family, key="tiny", title="tiny Stable Video Diffusion", default_steps=2)
    return replace(family, key=TINY_PREFIX + family.key, title=f"tiny {family.title}", default_frames=9, default_steps=2)


#: The tiny random models by name: ``tiny`` (SVD) and ``tiny-<family key>`` for the text families.
TINY_FAMILIES: dict[str, Family] = {
    "tiny": tiny_family(SVD),
    **{TINY_PREFIX + key: tiny_family(family) for key, family in FAMILIES.items() if family.kind != "svd"},
}


def family_for_short_name(name: str) -> tuple[str, Family] | None:
    """(hub repository, family) for a short name (``wan2.2-ti2v-5b``; case-insensitive), else None."""
    return SHORT_NAMES.get(name.strip().lower())


def family_for_pipeline(class_name: str | None, config: Mapping[str, object], components: Iterable[str]) -> Family | None:
    """The family of a diffusers folder, from its ``model_index.json``: the pipeline class, and for Wan (one
    class for three models) whether it holds a second expert, a CLIP image encoder, or expands timesteps.

    ``components`` are the names whose entry in the index is not null. None: not a family img2vid runs.
    """
    present = set(components)
    if class_name == "StableVideoDiffusionPipeline":
        return SVD
    if class_name in ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"):
        return LTX_VIDEO
    if class_name in ("WanImageToVideoPipeline", "WanPipeline"):
        if config.get("expand_timesteps"):
            return WAN22_TI2V_5B  # TI2V-5B ships as WanPipeline: one model for text and image to video
        if class_name == "WanPipeline":
            return None  # a text-to-video Wan model: it has no image input
        if "transformer_2" in present:
            return WAN22_I2V_A14B
        return WAN21_I2V_14B_480P
    return None


def families_text() -> str:
    """The families and their short names, for an error that says what img2vid runs."""
    return "; ".join(f"{family.title} ({key})" for key, family in FAMILIES.items())


def check_family_fields(family: Family, given: Mapping[str, object]) -> None:
    """Refuse, by name, a field the family does not read (never ignore it): a prompt for SVD, SVD's motion
    bucket for Wan. ``given`` holds the fields the caller set (``None`` values are "not set")."""
    for name, value in given.items():
        if value is None or name in family.fields:
            continue
        if name in PROMPT_FIELDS:
            why = f"{family.title} takes no text prompt (it animates the image alone)"
        else:
            why = f"a Stable Video Diffusion setting that {family.title} does not have"
        raise InvalidInputError(
            f"{name}: {why}; its fields are {', '.join(family.fields)}",
            field=name,
            value=value,
            allowed=f"not set for {family.title}",
        )
