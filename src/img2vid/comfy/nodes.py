"""img2vid's own ComfyUI node: image in, video out, through the engine chosen on the node.

The node validates its inputs, builds one ``VideoRequest`` per image of the batch, asks
:func:`~img2vid.engines.select.choose_engine` for the engine and converts each ``Video`` to ComfyUI's
types. Progress, Cancel and error messages go through :mod:`img2vid.comfy.runtime`; the local engine's
memory is made known to ComfyUI through :mod:`img2vid.comfy.memory`. Its inputs are declared once
(``SPEC``) for ComfyUI's V1 and V3 APIs; ``model`` lists ComfyUI's checkpoints and diffusers folders as
its own loaders do, the family table's short names and the configured server's models
(:mod:`img2vid.comfy.models`).

One node serves every family (Stable Video Diffusion, Wan, LTX-Video), so a widget left at its default
is not sent: the model's own default applies (frames, steps, fps and cfg_scale differ by family), and
SVD's own widgets (motion bucket, noise augmentation, minimum guidance, decode chunk) never reach a Wan or
LTX-Video request, whose engine would refuse them by name. A prompt is passed as given: SVD's engine
refuses a non-empty one with its own message. New widgets go at the end of the list, because ComfyUI
saves widget values by position and older workflows must load unchanged.

It has no key widget, on purpose: widget values are saved into every workflow file and every PNG that
ComfyUI writes, so a key typed there would travel with each shared image. Keys come from the environment
or the config file. This module must never poll, retry or fit images itself, and must not import
ComfyUI at import time except to learn whether ComfyUI offers the VIDEO type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ..config import is_stability_url, mask_url_password, resolve_base_url
from ..engines.base import Engine
from ..engines.modes import MEMORY_MODES, SPEED_MODES
from ..engines.select import choose_engine
from ..errors import InvalidInputError
from ..families import FAMILIES, SVD, Family
from ..fitting import FitMode
from ..request import DEFAULT_MOTION_BUCKET_ID, ENGINE_DEFAULTS, MAX_PROMPT_CHARS, MAX_SEED, RANGES, VideoRequest
from ..video import Video
from . import memory as comfy_memory
from .host import model_management
from .models import (
    HUB_DEFAULT,
    ModelChoice,
    is_local_model_name,
    is_server_model_name,
    model_choices,
    resolve_choice,
)
from .runtime import generate_videos, is_interrupt, node_errors, register_known_secrets
from .schema import Field, NodeSpec, Out, SpecNode

__all__ = [
    "Img2VidImageToVideo",
    "SPEC",
    "ENGINE_CHOICES",
    "FIT_CHOICES",
    "HUB_DEFAULT",
    "SVD_WIDGET_DEFAULTS",
    "svd_fields",
    "checkpoint_choices",
    "choose_node_engine",
]

ENGINE_CHOICES = ["auto", "remote", "local"]
#: The local engine's speed and memory modes. The node defaults to eager: inside ComfyUI a model is often
#: unloaded and loaded again, and a first compile takes minutes.
SPEED_CHOICES = list(SPEED_MODES)
MEMORY_CHOICES = list(MEMORY_MODES)
#: crop first: it is the default everywhere in img2vid.
FIT_CHOICES = [FitMode.CROP.value, FitMode.PAD.value, FitMode.STRETCH.value, FitMode.STRICT.value]



def _find_video_api() -> tuple[Any, Any] | None:
    """ComfyUI's ``(VideoFromComponents, VideoComponents)``, from whichever API this ComfyUI has."""
    try:
        from comfy_api.latest import InputImpl, Types  # type: ignore[import-not-found]

        return InputImpl.VideoFromComponents, Types.VideoComponents
    except Exception:  # noqa: BLE001 - older ComfyUI, or none
        pass
    try:
        from comfy_api.input_impl import VideoFromComponents  # type: ignore[import-not-found]
        from comfy_api.util import VideoComponents  # type: ignore[import-not-found]

        return VideoFromComponents, VideoComponents
    except Exception:  # noqa: BLE001
        return None


#: Looked up once, when ComfyUI loads the node: the node's outputs are fixed at that moment.
_VIDEO_API = _find_video_api()


def _int_range(name: str) -> tuple[int, int]:
    _, low, high = RANGES[name]
    return int(low), int(high)


def _family_defaults(attribute: str) -> str:
    """Each family's default for a field, from the family table, for a tooltip ("svd-xt 25, ...")."""
    shown: dict[Any, list[str]] = {}
    for family in FAMILIES.values():
        value = getattr(family, attribute)
        shown.setdefault("by its checkpoint (14 or 25)" if value is None else value, []).append(family.key)
    return ", ".join(f"{' / '.join(keys)} {value}" for value, keys in shown.items())


def _optional_int(name: str, meaning: str, default_attribute: str | None = None) -> Field:
    _, high = _int_range(name)
    defaults = f" ({_family_defaults(default_attribute)})" if default_attribute else ""
    return Field(
        name,
        "INT",
        {"default": 0, "min": 0, "max": high, "step": 1, "tooltip": f"{meaning}. 0: the model's default{defaults}."},
        optional=True,
    )


def _text_field(name: str, meaning: str) -> Field:
    """A multiline text box, empty by default (an empty text is no text: ``None`` in the request)."""
    return Field(
        name,
        "STRING",
        {"default": "", "multiline": True, "tooltip": f"{meaning} At most {MAX_PROMPT_CHARS} characters."},
        optional=True,
    )


def _comfy_device() -> str | None:
    """ComfyUI's torch device, so the local engine runs where ComfyUI's own models run."""
    mm = model_management()
    try:
        return str(mm.get_torch_device()) if mm is not None else None
    except Exception:  # noqa: BLE001 - a ComfyUI that cannot name its device: the engine picks one itself
        return None


def _check_server(server: str | None) -> None:
    if server is None or server.lower() == "stability" or server.startswith(("http://", "https://")):
        return
    raise InvalidInputError.for_field(
        "server", mask_url_password(server), "'stability', an http:// or https:// URL, or empty"
    )


def _side(engine: str, server: str | None, choice: ModelChoice) -> str:
    """Where the node runs: ``remote``, ``local``, or ``configured`` (auto with nothing picked or set:
    a configured server or key means remote, otherwise local).

    In ``auto``, a file or folder of this ComfyUI's runs locally; otherwise a server set on the node wins
    (a short name then names one of its models); otherwise a picked model runs locally."""
    if engine not in ENGINE_CHOICES:
        raise InvalidInputError.for_field("engine", engine, "one of " + ", ".join(ENGINE_CHOICES))
    if engine != "auto":
        return engine
    if choice.only_local:
        return "local"
    if server:
        return "remote"
    return "configured" if choice.is_default else "local"


def _server_engine(server: str | None, choice: ModelChoice) -> Engine:
    """The remote engine for the node's server (or the configured one), asking it for the picked model."""
    model = choice.server_model
    if model is not None:
        if choice.only_local:
            raise InvalidInputError(
                f"model {model!r} is a file or folder of this ComfyUI's, which a server cannot load: pick one of "
                f"the server's models (or {HUB_DEFAULT} for its default), or set engine to local",
                field="model",
                value=model,
                allowed="a model name the server has",
            )
        if not is_server_model_name(model):
            raise InvalidInputError.for_field("model", model, "a model name the server has (plain text)")
        if is_stability_url(resolve_base_url(server)):
            raise InvalidInputError(
                f"model is {model!r}, but Stability's image-to-video service has one model: set model to "
                f"{HUB_DEFAULT} (the service's own), or use an img2vid server",
                field="model",
                value=model,
                allowed=HUB_DEFAULT,
            )
    return choose_engine(server or resolve_base_url(), server_model=model)


def choose_node_engine(engine: str, server: str, model: str, *, speed: str = "eager", memory: str = "auto") -> Engine:
    """The engine the node's ``engine``, ``server`` and ``model`` widgets ask for (``speed`` and ``memory``
    apply to the local engine only)."""
    server_value = (server or "").strip() or None
    _check_server(server_value)
    choice = resolve_choice(model)
    side = _side(engine, server_value, choice)
    if side == "remote":
        return _server_engine(server_value, choice)
    if side == "local":
        return choose_engine("local", choice.local_model, device=_comfy_device(), speed=speed, memory=memory)
    return choose_engine(None, device=_comfy_device(), speed=speed, memory=memory)


def _request_family(engine: str, server: str, model: str) -> Family | None:
    """The family the run will use where the node can tell without loading anything; ``None`` where only
    the engine can (a server's default model, a hub id outside the short names)."""
    server_value = (server or "").strip() or None
    choice = resolve_choice(model)
    side = _side(engine, server_value, choice)
    if side == "remote":
        return choice.remote_family
    return choice.local_family if side == "local" else None


#: SVD's own widgets and their widget defaults: a widget at its default is not sent (for SVD the engine
#: then uses that same value), so a Wan or LTX-Video request never carries one.
SVD_WIDGET_DEFAULTS: dict[str, int | float] = {
    "motion_bucket_id": DEFAULT_MOTION_BUCKET_ID,
    "noise_aug_strength": ENGINE_DEFAULTS["noise_aug_strength"],
    "min_guidance_scale": ENGINE_DEFAULTS["min_guidance_scale"],
    "decode_chunk_size": 0,
}


def _at_default(name: str, value: Any) -> bool:
    default = SVD_WIDGET_DEFAULTS[name]
    try:
        return math.isclose(float(value), float(default), rel_tol=0.0, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False  # not a number: VideoRequest names the field


def svd_fields(family: Family | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """SVD's widgets as request fields: ``None`` for one at its default; a changed one is sent, or refused
    here by name when the model is known to be of another family (it has no such setting, and a silently
    dropped value would make a different video than the one asked for)."""
    given = {name: value for name, value in values.items() if not _at_default(name, value)}
    if family is not None and family.kind != SVD.kind and given:
        name, value = next(iter(given.items()))
        default = SVD_WIDGET_DEFAULTS[name]
        raise InvalidInputError(
            f"{name} is {value}, a Stable Video Diffusion setting that {family.title} does not have: set it "
            f"back to {default} (its default, which is not sent)",
            field=name,
            value=value,
            allowed=f"{default} for {family.title}",
        )
    return {name: (value if name in given else None) for name, value in values.items()}


def _batch(image: Any) -> list[Any]:
    """The images of a ComfyUI IMAGE batch, one H×W×C item each."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) == 4:
        if shape[0] < 1:
            raise InvalidInputError("image batch is empty", field="image", allowed="at least one image")
        return [image[i] for i in range(shape[0])]
    return [image]


def _concat_frames(videos: list[Video]) -> Any:
    import torch

    sizes = {(v.width, v.height) for v in videos}
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise InvalidInputError(
            f"the videos came back at different sizes ({shown}) and cannot share one IMAGE batch; "
            "run the images separately",
            field="image",
        )
    return torch.cat([v.to_comfy() for v in videos], dim=0)


def _video_object(frames: Any, fps: float) -> Any:
    assert _VIDEO_API is not None
    video_from_components, video_components = _VIDEO_API
    rate = Fraction(fps).limit_denominator(1001)
    return video_from_components(video_components(images=frames, audio=None, frame_rate=rate))


def checkpoint_choices() -> list[str]:
    """The ``model`` list (:func:`img2vid.comfy.models.model_choices`), read each time ComfyUI asks for
    the node's inputs: SVD checkpoints, the default, short names, diffusers folders, other checkpoints,
    the configured server's models and the tiny models. Outside ComfyUI: the default, names and tiny ones."""
    return model_choices()


#: The ``video`` output, where this ComfyUI offers the VIDEO type.
_VIDEO_OUTPUT = (
    (Out("video", "VIDEO", "Each video, with its frame rate, for ComfyUI's video nodes.", is_list=True),)
    if _VIDEO_API
    else ()
)

SPEC = NodeSpec(
    node_id="Img2VidImageToVideo",
    display_name="Image to Video (img2vid)",
    category="img2vid",
    description=(
        "Turn an image into a short video with Stable Video Diffusion, Wan 2.x or LTX-Video (with a prompt), on "
        "an img2vid server (or any server of Stability's image-to-video protocol) or locally. Keys come from the "
        "environment or the config file."
    ),
    inputs=(
        Field("image", "IMAGE", {"tooltip": "One image, or a batch: each image becomes its own video."}),
        Field(
            "engine",
            "COMBO",
            {
                "default": "auto",
                "tooltip": "remote: a server speaking Stability's image-to-video protocol. local: the model "
                "in this process. auto: local when a file or folder of this ComfyUI's is picked as model, remote "
                "when a server is set, local when another model is picked, else remote if IMG2VID_BASE_URL or "
                "a key is configured, else local.",
            },
            choices=ENGINE_CHOICES,
        ),
        Field(
            "server",
            "STRING",
            {
                "default": "",
                "multiline": False,
                "tooltip": "Remote: an img2vid server URL (http://host:8000), 'stability', or empty "
                "for IMG2VID_BASE_URL / the config file. Keys come from IMG2VID_API_KEY, "
                "STABILITY_API_KEY or the config file, never from a widget.",
            },
        ),
        Field(
            "model",
            "COMBO",
            {
                "default": HUB_DEFAULT,
                "tooltip": f"{HUB_DEFAULT}: locally SVD-XT from the Hugging Face hub, on a server the "
                "server's default model. A short name (wan2.2-ti2v-5b, ltx-video, svd-xt ...): locally "
                "downloaded once, then cached; on an img2vid server, its model of that name. Also a "
                "checkpoint from ComfyUI's checkpoints folder (SVD), a diffusers folder from ComfyUI's "
                "diffusers folder, the configured server's models, and tiny / tiny-<family> (random, offline: "
                "noise, for trying the node).",
            },
            choices=checkpoint_choices,
        ),
        Field("seed", "INT", {"default": 0, "min": 0, "max": MAX_SEED, "tooltip": "0: a new random seed every run."}),
        Field(
            "cfg_scale",
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": float(RANGES["cfg_scale"][2]),
                "step": 0.1,
                "round": 0.01,
                "tooltip": "How closely the video follows the image (and the prompt). 0: the model's default ("
                + _family_defaults("default_cfg_scale")
                + "); 1 turns guidance off.",
            },
        ),
        Field(
            "motion_bucket_id",
            "INT",
            {
                "default": DEFAULT_MOTION_BUCKET_ID,
                "min": _int_range("motion_bucket_id")[0],
                "max": _int_range("motion_bucket_id")[1],
                "step": 1,
                "tooltip": f"Stable Video Diffusion only: more is more motion. Leave at {DEFAULT_MOTION_BUCKET_ID} "
                "(not sent) for Wan and LTX-Video.",
            },
        ),
        Field(
            "fit",
            "COMBO",
            {
                "default": FitMode.CROP.value,
                "tooltip": "How an image of another size is fitted to the sizes the engine accepts: "
                "crop (fill, no distortion), pad (black bars), stretch, or strict (refuse).",
            },
            choices=FIT_CHOICES,
        ),
        _optional_int("frames", "Frames to make (Wan: 4k+1, LTX-Video: 8k+1)", "default_frames"),
        _optional_int("steps", "Denoising steps", "default_steps"),
        _optional_int("fps", "Frame rate, also SVD's and LTX-Video's fps conditioning", "default_fps"),
        Field(
            "noise_aug_strength",
            "FLOAT",
            {
                "default": ENGINE_DEFAULTS["noise_aug_strength"],  # a float widget cannot be left unset
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": "Stable Video Diffusion only: noise added to the image; more frees the video "
                "from it. Leave at the default (not sent) for Wan and LTX-Video.",
            },
            optional=True,
        ),
        Field(
            "min_guidance_scale",
            "FLOAT",
            {
                "default": ENGINE_DEFAULTS["min_guidance_scale"],
                "min": 0.0,
                "max": float(RANGES["min_guidance_scale"][2]),
                "step": 0.1,
                "round": 0.01,
                "tooltip": "Stable Video Diffusion only: guidance on the first frame (rising to cfg_scale "
                "on the last). Leave at the default (not sent) for Wan and LTX-Video.",
            },
            optional=True,
        ),
        _optional_int("decode_chunk_size", "Stable Video Diffusion only: frames decoded at once (less memory)"),
        Field(
            "speed",
            "COMBO",
            {
                "default": "eager",
                "tooltip": "Local engine: eager runs at once; compiled is faster per clip but compiles for minutes "
                "the first time (then from its cache); fp8 needs an RTX 40/H100-class GPU; fast also reuses "
                "features across steps (slightly different frames).",
            },
            choices=SPEED_CHOICES,
            optional=True,
        ),
        Field(
            "memory",
            "COMBO",
            {"default": "auto", "tooltip": "Local engine: low keeps SVD-XT under 8 GB of GPU memory (slower)."},
            choices=MEMORY_CHOICES,
            optional=True,
        ),
        # Last, after every older widget: ComfyUI saves widget values by position.
        _text_field("prompt", "What should happen in the video (Wan and LTX-Video; empty for SVD, which takes none)."),
        _text_field(
            "negative_prompt",
            "What the video should avoid (Wan and LTX-Video). Empty: the model's recommended negative prompt.",
        ),
    ),
    # ``frame_counts`` and ``video`` hold one item per input image; for one image they act as single values.
    outputs=(
        Out("frames", "IMAGE", "Every video's frames, one after another, in the order of the input images."),
        Out("fps", "FLOAT", "The frame rate, read from the video."),
        Out("frame_counts", "INT", "How many frames each video has, in order.", is_list=True),
    )
    + _VIDEO_OUTPUT,
    wants_unique_id=True,
)


class Img2VidImageToVideo(SpecNode):
    """Image to video with Stable Video Diffusion, Wan or LTX-Video: on an img2vid server, a protocol
    server, or locally."""

    SPEC = SPEC

    @classmethod
    def VALIDATE_INPUTS(cls, model: Any, engine: Any = "auto") -> bool | str:  # noqa: N802 - ComfyUI's name
        """Beyond the listed entries, ``model`` may name any hub id, folder or file (API prompts, workflows
        from another machine), and with the remote engine any model a server has (it may list names this
        ComfyUI has not read): ComfyUI then leaves these inputs' checks to this function, so ``engine``'s
        list is checked here too."""
        if engine not in ENGINE_CHOICES:
            return f"engine must be one of {', '.join(ENGINE_CHOICES)}; got {engine!r}"
        if isinstance(model, str):
            name = model.strip()
            if is_local_model_name(name) or (engine == "remote" and is_server_model_name(name)):
                return True
        return (
            "model must be a short name (wan2.2-ti2v-5b, ltx-video, svd-xt ...), a checkpoint from ComfyUI's "
            "checkpoints folder, a diffusers folder, a hub id (org/name), a .safetensors file, or with engine "
            f"remote a model the server has; got {model!r}"
        )

    FUNCTION = "generate"

    def generate(
        self,
        image: Any,
        engine: str = "auto",
        server: str = "",
        model: str = "",
        seed: int = 0,
        cfg_scale: float = 0.0,
        motion_bucket_id: int = DEFAULT_MOTION_BUCKET_ID,
        fit: str = FitMode.CROP.value,
        frames: int = 0,
        steps: int = 0,
        fps: int = 0,
        noise_aug_strength: float = ENGINE_DEFAULTS["noise_aug_strength"],
        min_guidance_scale: float = ENGINE_DEFAULTS["min_guidance_scale"],
        decode_chunk_size: int = 0,
        speed: str = "eager",
        memory: str = "auto",
        prompt: str = "",
        negative_prompt: str = "",
        unique_id: str | None = None,
    ) -> tuple[Any, ...]:
        register_known_secrets()
        with node_errors():
            svd_only = svd_fields(
                _request_family(engine, server, model),
                {
                    "motion_bucket_id": motion_bucket_id,
                    "noise_aug_strength": noise_aug_strength,
                    "min_guidance_scale": min_guidance_scale,
                    "decode_chunk_size": decode_chunk_size,
                },
            )
            requests = _requests(
                image,
                seed=seed,
                cfg_scale=cfg_scale or None,  # 0: the model's default (0 and 1 both mean no guidance)
                frames=frames or None,
                steps=steps or None,
                fps=fps or None,
                prompt=prompt,
                negative_prompt=negative_prompt,
                fit=fit,
                **svd_only,
            )
            chosen = choose_node_engine(engine, server, model, speed=speed, memory=memory)
        videos = _run(chosen, requests, None if unique_id is None else str(unique_id))
        return _outputs(videos)


def _requests(image: Any, **fields: Any) -> list[VideoRequest]:
    """One request per image of the batch, each with the node's fields."""
    return [VideoRequest(image=item, **fields) for item in _batch(image)]


def _run(engine: Engine, requests: list[VideoRequest], node_id: str | None) -> list[Video]:
    """The videos, made by ``engine`` under ComfyUI's progress bar, Cancel and memory management; the
    engine's connections are closed after (the shared local engine stays warm, unless interrupted)."""
    comfy_memory.attach(engine)
    try:
        return generate_videos(engine, requests, node_id=node_id)
    except BaseException as exc:
        if is_interrupt(exc):
            comfy_memory.release_after_interrupt(engine)
        raise
    finally:
        engine.close()


def _outputs(videos: list[Video]) -> tuple[Any, ...]:
    """The node's outputs: every frame in one IMAGE batch, the frame rate, each video's frame count and,
    where this ComfyUI has the VIDEO type, one video object per input image."""
    with node_errors():
        all_frames = _concat_frames(videos)
    counts = [v.num_frames for v in videos]
    outputs: tuple[Any, ...] = (all_frames, videos[0].fps, counts)
    if _VIDEO_API is not None:
        start = 0
        clips = []
        for video, count in zip(videos, counts, strict=True):
            clips.append(_video_object(all_frames[start : start + count], video.fps))
            start += count
        outputs += (clips,)
    return outputs
