"""img2vid's own ComfyUI node: image in, video out, through the engine chosen on the node.

The node validates its inputs, builds one ``VideoRequest`` per image of the batch, asks
:func:`~img2vid.engines.select.choose_engine` for the engine and converts each ``Video`` to ComfyUI's
types. Progress, Cancel and error messages go through :mod:`img2vid.comfy.runtime`; the local engine's
memory is made known to ComfyUI through :mod:`img2vid.comfy.memory`. Its inputs are declared once
(``SPEC``) for ComfyUI's V1 and V3 APIs; ``model`` lists ComfyUI's checkpoints as its own loaders do.

It has no key widget, on purpose: widget values are saved into every workflow file and every PNG that
ComfyUI writes, so a key typed there would travel with each shared image. Keys come from the environment
or the config file. This module must never poll, retry or fit images itself, and must not import
ComfyUI at import time except to learn whether ComfyUI offers the VIDEO type.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..config import mask_url_password, resolve_base_url
from ..engines.base import Engine
from ..engines.modes import MEMORY_MODES, SPEED_MODES
from ..engines.select import choose_engine
from ..errors import InvalidInputError
from ..fitting import FitMode
from ..request import DEFAULT_CFG_SCALE, DEFAULT_MOTION_BUCKET_ID, ENGINE_DEFAULTS, MAX_SEED, RANGES, VideoRequest
from ..video import Video
from . import memory as comfy_memory
from .runtime import generate_videos, is_interrupt, known_secrets, node_errors
from .schema import Field, NodeSpec, Out, SpecNode

__all__ = [
    "Img2VidImageToVideo",
    "SPEC",
    "ENGINE_CHOICES",
    "FIT_CHOICES",
    "HUB_DEFAULT",
    "checkpoint_choices",
    "video_type_available",
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


def video_type_available() -> bool:
    """Whether this ComfyUI offers the VIDEO type (the node then has a ``video`` output)."""
    return _VIDEO_API is not None


def _int_range(name: str) -> tuple[int, int]:
    _, low, high = RANGES[name]
    return int(low), int(high)


def _optional_int(name: str, meaning: str) -> Field:
    _, high = _int_range(name)
    return Field(
        name,
        "INT",
        {"default": 0, "min": 0, "max": high, "step": 1, "tooltip": f"Local engine: {meaning}. 0: the engine's default."},
        optional=True,
    )


def _model_location(model: str) -> str:
    """A file name from ComfyUI's checkpoints folder as its full path; anything else as given."""
    try:
        import folder_paths  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - outside ComfyUI: ids, folders and paths only
        return model
    try:
        found = folder_paths.get_full_path("checkpoints", model)
    except Exception:  # noqa: BLE001 - an unknown folder name in an unusual ComfyUI setup
        found = None
    return str(found) if found else model


def _comfy_device() -> str | None:
    """ComfyUI's torch device, so the local engine runs where ComfyUI's own models run."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]

        return str(mm.get_torch_device())
    except Exception:  # noqa: BLE001 - no ComfyUI: the engine picks the best device itself
        return None


def _check_server(server: str | None) -> None:
    if server is None or server.lower() == "stability" or server.startswith(("http://", "https://")):
        return
    raise InvalidInputError.for_field(
        "server", mask_url_password(server), "'stability', an http:// or https:// URL, or empty"
    )


def choose_node_engine(engine: str, server: str, model: str, *, speed: str = "eager", memory: str = "auto") -> Engine:
    """The engine the node's ``engine``, ``server`` and ``model`` widgets ask for (``speed`` and ``memory``
    apply to the local engine only)."""
    server_value = (server or "").strip() or None
    model_value = (model or "").strip() or None
    _check_server(server_value)
    # The hub default is the list's neutral entry: only a picked checkpoint, folder or file means local.
    picked = model_value is not None and model_value != HUB_DEFAULT
    if engine == "remote" or (engine == "auto" and server_value and not picked):
        return choose_engine(server_value or resolve_base_url())
    if engine == "local" or (engine == "auto" and picked):
        location = _model_location(model_value) if model_value else None
        return choose_engine("local", location, device=_comfy_device(), speed=speed, memory=memory)
    if engine == "auto":
        # Neither set: a configured server or key means remote, otherwise the local engine.
        return choose_engine(None, device=_comfy_device(), speed=speed, memory=memory)
    raise InvalidInputError.for_field("engine", engine, "one of " + ", ".join(ENGINE_CHOICES))


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


#: The local engine's default model (SVD-XT on the hub); the same as ``img2vid.engines.local.DEFAULT_MODEL``,
#: written out here because importing the local engine imports torch.
HUB_DEFAULT = "stabilityai/stable-video-diffusion-img2vid-xt"

#: How a checkpoint file's name says it is Stable Video Diffusion (svd.safetensors, svd_xt_1_1.safetensors …).
_SVD_NAME = re.compile(r"svd|stable[-_ ]?video", re.IGNORECASE)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def checkpoint_choices() -> list[str]:
    """The ``model`` list: the user's SVD checkpoints, the hub default, then their other checkpoints.

    From ComfyUI's ``checkpoints`` folders, as its own loaders list them, read each time ComfyUI asks for
    the node's inputs. Outside ComfyUI only the hub default.
    """
    try:
        import folder_paths  # type: ignore[import-not-found]

        names = [str(n) for n in folder_paths.get_filename_list("checkpoints")]
    except Exception:  # noqa: BLE001 - outside ComfyUI, or a setup without a checkpoints folder
        names = []
    svd = [n for n in names if _SVD_NAME.search(n.replace("\\", "/").rsplit("/", 1)[-1])]
    return svd + [HUB_DEFAULT] + [n for n in names if n not in svd]


def _is_model_name(model: str) -> bool:
    """Whether ``model`` can name a local model: a listed checkpoint, a hub id, a path, or ``tiny``."""
    if model in ("", "tiny", HUB_DEFAULT) or _HUB_ID.match(model):
        return True
    return model in checkpoint_choices() or Path(model).expanduser().exists()


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
        "Turn an image into a short video with Stable Video Diffusion, on an img2vid server (or any server of "
        "Stability's image-to-video protocol) or locally. Keys come from the environment or the config file."
    ),
    inputs=(
        Field("image", "IMAGE", {"tooltip": "One image, or a batch: each image becomes its own video."}),
        Field(
            "engine",
            "COMBO",
            {
                "default": "auto",
                "tooltip": "remote: a server speaking Stability's image-to-video protocol. local: Stable "
                "Video Diffusion in this process. auto: local when a checkpoint is picked as model, remote "
                "when a server is set, else remote if IMG2VID_BASE_URL or a key is configured, else local.",
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
                "tooltip": "Local: a checkpoint from ComfyUI's checkpoints folder (svd_xt.safetensors), or "
                f"{HUB_DEFAULT} from the Hugging Face hub (downloaded once, then cached).",
            },
            choices=checkpoint_choices,
        ),
        Field("seed", "INT", {"default": 0, "min": 0, "max": MAX_SEED, "tooltip": "0: a new random seed every run."}),
        Field(
            "cfg_scale",
            "FLOAT",
            {
                "default": DEFAULT_CFG_SCALE,
                "min": 0.0,
                "max": float(RANGES["cfg_scale"][2]),
                "step": 0.1,
                "round": 0.01,
                "tooltip": "How closely the video sticks to the image.",
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
                "tooltip": "More is more motion.",
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
        _optional_int("frames", "frames to make"),
        _optional_int("steps", "denoising steps"),
        _optional_int("fps", "frame rate, also the model's fps conditioning"),
        Field(
            "noise_aug_strength",
            "FLOAT",
            {
                "default": ENGINE_DEFAULTS["noise_aug_strength"],  # a float widget cannot be left unset
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": "Local engine: noise added to the image; more frees the video from it.",
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
                "tooltip": "Local engine: guidance on the first frame (rising to cfg_scale on the last).",
            },
            optional=True,
        ),
        _optional_int("decode_chunk_size", "frames decoded at once (less memory)"),
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
    """Image to video with Stable Video Diffusion: on an img2vid server, a protocol server, or locally."""

    SPEC = SPEC

    @classmethod
    def VALIDATE_INPUTS(cls, model: Any) -> bool | str:  # noqa: N802 - ComfyUI's name
        """Beyond the listed checkpoints, ``model`` may name any hub id, folder or file (API prompts,
        workflows from another machine): ComfyUI then leaves this input's check to this function."""
        if isinstance(model, str) and _is_model_name(model.strip()):
            return True
        return (
            f"model must be a checkpoint from ComfyUI's checkpoints folder, a hub id (org/name), a diffusers "
            f"folder or a .safetensors file; got {model!r}"
        )

    FUNCTION = "generate"

    def generate(
        self,
        image: Any,
        engine: str = "auto",
        server: str = "",
        model: str = "",
        seed: int = 0,
        cfg_scale: float = DEFAULT_CFG_SCALE,
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
        unique_id: str | None = None,
    ) -> tuple[Any, ...]:
        secrets = known_secrets()
        with node_errors(secrets):
            requests = [
                VideoRequest(
                    image=item,
                    seed=seed,
                    cfg_scale=cfg_scale,
                    motion_bucket_id=motion_bucket_id,
                    frames=frames or None,
                    steps=steps or None,
                    fps=fps or None,
                    noise_aug_strength=noise_aug_strength,
                    min_guidance_scale=min_guidance_scale,
                    decode_chunk_size=decode_chunk_size or None,
                    fit=fit,
                )
                for item in _batch(image)
            ]
            chosen = choose_node_engine(engine, server, model, speed=speed, memory=memory)
        comfy_memory.attach(chosen)
        node_id = str(unique_id) if unique_id is not None else None
        try:
            videos = generate_videos(chosen, requests, node_id=node_id, secrets=secrets)
        except BaseException as exc:
            if is_interrupt(exc):
                comfy_memory.release_after_interrupt(chosen)
            raise
        finally:
            chosen.close()  # a remote engine's connections; the shared local engine stays warm
        with node_errors(secrets):
            all_frames = _concat_frames(videos)
        counts = [v.num_frames for v in videos]
        outputs: tuple[Any, ...] = (all_frames, videos[0].fps, counts)
        if _VIDEO_API is not None:
            start = 0
            clips = []
            for video, count in zip(videos, counts):
                clips.append(_video_object(all_frames[start : start + count], video.fps))
                start += count
            outputs += (clips,)
        return outputs
