"""``SaltAIStableVideoDiffusion``: the drop-in for the node that saved workflows already contain.

The class name, inputs (order, types, defaults, ranges), output, function name and category are the
original node's, field by field, so a saved workflow loads and runs unchanged; ``IMG2VID_BASE_URL`` (or the
config file's ``base_url``) sends it to an img2vid server instead of the hosted service, which is gone.
Where the original was broken it now does what a user expects: a clear error for a batch and for a cfg the
service refuses, seeds folded into the service's range instead of all clamped to one value, any image size
fitted, progress and Cancel, errors on one line, and seed 0 (random) runs again on every queue instead of
handing back ComfyUI's cached video.

This module must never change that contract, never poll, retry or fit (the engine does), and never let
the ``api_key`` widget's value reach a message or a log line.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..config import ENV_API_KEY, ENV_BASE_URL, is_stability_url, resolve_api_key, resolve_base_url
from ..engines.select import choose_engine
from ..errors import AuthenticationError, InvalidInputError
from ..fitting import FitMode
from ..request import MAX_SEED, RANGES, VideoRequest
from .runtime import generate_videos, node_errors, register_known_secrets
from .schema import Field, NodeSpec, Out, SpecNode

__all__ = ["SaltAIStableVideoDiffusion", "SPEC", "fold_seed", "SEED_MODULUS"]

log = logging.getLogger("img2vid.comfy")

#: Seeds above the protocol's range are taken modulo this, so that distinct seeds stay distinct.
SEED_MODULUS = MAX_SEED + 1
_CFG_LOW, _CFG_HIGH = RANGES["cfg_scale"][1], RANGES["cfg_scale"][2]


def fold_seed(seed: int) -> int:
    """A widget seed (up to 2**64 - 1) as a protocol seed (0 .. 4294967294)."""
    seed = int(seed)
    if seed <= MAX_SEED:
        return seed
    folded = seed % SEED_MODULUS
    log.info("img2vid: seed %d is above the service's %d; using %d (seed mod %d)", seed, MAX_SEED, folded, SEED_MODULUS)
    return folded


def _check_cfg(cfg: float) -> float:
    value = float(cfg)
    if not math.isfinite(value) or not _CFG_LOW <= value <= _CFG_HIGH:
        raise InvalidInputError(
            f"cfg is {cfg}, but the service accepts cfg from {_CFG_LOW:g} to {_CFG_HIGH:g}: "
            f"set cfg to {_CFG_HIGH:g} or less",
            field="cfg",
            value=cfg,
            allowed=f"{_CFG_LOW:g} .. {_CFG_HIGH:g}",
        )
    return value


def _check_single_image(image: Any) -> None:
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) == 4 and shape[0] != 1:
        raise InvalidInputError(
            f"SaltAIStableVideoDiffusion takes one image; got a batch of {shape[0]}. "
            "Pick one (ImageFromBatch), or use img2vid's Image to Video node, which makes one video per image",
            field="image",
            value=f"batch of {shape[0]}",
            allowed="one image (batch size 1)",
        )


def _check_reachable(base_url: str, key: str | None) -> None:
    """A saved workflow with an empty key and nothing configured: say what changed and what to set."""
    if key is None and is_stability_url(base_url) and resolve_api_key(None, base_url) is None:
        raise AuthenticationError(
            "api_key is empty and no server or key is configured; Stability's hosted image-to-video service "
            f"no longer answers anyway: set {ENV_BASE_URL} to an img2vid server (and {ENV_API_KEY} if it "
            "needs a key), or use img2vid's Image to Video node with the local engine"
        )


def _key_for(base_url: str, widget_key: str | None) -> str | None:
    """The key to send: a key typed into the widget was made for Stability's service, so it goes there
    first; any other server gets its own configured key, and the widget's only when none is configured.
    ``None`` lets the engine resolve (and name every place a key can come from when there is none)."""
    if is_stability_url(base_url):
        return widget_key
    return resolve_api_key(None, base_url) or widget_key


SPEC = NodeSpec(
    node_id="SaltAIStableVideoDiffusion",
    display_name="Stable Video Diffusion",
    category="SALT/API/Stability API",
    description=(
        "Image to video through Stability's image-to-video protocol. Set IMG2VID_BASE_URL to an img2vid "
        "server; leave api_key empty to use IMG2VID_API_KEY, STABILITY_API_KEY or the config file."
    ),
    inputs=(
        Field("image", "IMAGE"),
        Field("api_key", "STRING", {"multiline": False}),
        Field("seed", "INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
        Field("cfg", "FLOAT", {"default": 2.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
        Field("mbi", "INT", {"min": 1, "max": 255, "default": 40, "step": 1}),
    ),
    outputs=(Out("frames", "IMAGE", "The video's frames, in order."),),
)


class SaltAIStableVideoDiffusion(SpecNode):
    """Stable Video Diffusion through Stability's image-to-video protocol (an img2vid server, today)."""

    SPEC = SPEC
    FUNCTION = "generate_video"

    def generate_video(self, image: Any, api_key: str, seed: int = 0, cfg: float = 2.5, mbi: int = 40) -> tuple[Any]:
        widget_key = (api_key or "").strip() or None
        register_known_secrets(widget_key)
        with node_errors():
            _check_single_image(image)
            request = VideoRequest(
                image=image,
                seed=fold_seed(seed),
                cfg_scale=_check_cfg(cfg),
                motion_bucket_id=mbi,
                fit=FitMode.CROP,
            )
            base_url = resolve_base_url()
            key = _key_for(base_url, widget_key)
            _check_reachable(base_url, key)
            engine = choose_engine(base_url, api_key=key)
        try:
            video = generate_videos(engine, [request])[0]
        finally:
            engine.close()
        return (video.to_comfy(),)
