"""img2vid's own ComfyUI node: image in, video out, through the engine chosen on the node.

The node validates its inputs, builds one ``VideoRequest`` per image of the batch, asks
:func:`~img2vid.engines.select.choose_engine` for the engine and converts each ``Video`` to ComfyUI's
types. Progress, Cancel and error messages go through :mod:`img2vid.comfy.runtime`.

It has no key widget, on purpose: widget values are saved into every workflow file and every PNG that
ComfyUI writes, so a key typed there would travel with each shared image. Keys come from the environment
or the config file. This module must never poll, retry or fit images itself, and must not import
ComfyUI at import time except to learn whether ComfyUI offers the VIDEO type.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..config import mask_url_password, resolve_base_url
from ..engines.base import Engine, close_engine
from ..engines.select import choose_engine
from ..errors import InvalidInputError
from ..fitting import FitMode
from ..request import DEFAULT_CFG_SCALE, DEFAULT_MOTION_BUCKET_ID, MAX_SEED, RANGES, VideoRequest
from ..video import Video
from .runtime import generate_videos, known_secrets, node_errors

__all__ = ["Img2VidImageToVideo", "ENGINE_CHOICES", "FIT_CHOICES", "video_type_available"]

ENGINE_CHOICES = ["auto", "remote", "local"]
#: crop first: it is the default everywhere in img2vid.
FIT_CHOICES = [FitMode.CROP.value, FitMode.PAD.value, FitMode.STRETCH.value, FitMode.STRICT.value]

#: Stable Video Diffusion's own defaults for the two float options a widget cannot leave unset.
DEFAULT_NOISE_AUG_STRENGTH = 0.02
DEFAULT_MIN_GUIDANCE_SCALE = 1.0


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


def _optional_int(name: str, meaning: str) -> tuple[str, dict[str, Any]]:
    _, high = _int_range(name)
    return ("INT", {"default": 0, "min": 0, "max": high, "step": 1, "tooltip": f"Local engine: {meaning}. 0: the engine's default."})


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


def choose_node_engine(engine: str, server: str, model: str) -> Engine:
    """The engine the node's ``engine``, ``server`` and ``model`` widgets ask for."""
    server_value = (server or "").strip() or None
    model_value = (model or "").strip() or None
    _check_server(server_value)
    if engine == "remote" or (engine == "auto" and server_value and not model_value):
        return choose_engine(server_value or resolve_base_url())
    if engine == "local" or (engine == "auto" and model_value):
        location = _model_location(model_value) if model_value else None
        return choose_engine("local", location, device=_comfy_device())
    if engine == "auto":
        # Neither set: a configured server or key means remote, otherwise the local engine.
        return choose_engine(None, device=_comfy_device())
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


class Img2VidImageToVideo:
    """Image to video with Stable Video Diffusion: on an img2vid server, a protocol server, or locally."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        mbi_low, mbi_high = _int_range("motion_bucket_id")
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "One image, or a batch: each image becomes its own video."}),
                "engine": (
                    ENGINE_CHOICES,
                    {
                        "default": "auto",
                        "tooltip": "remote: a server speaking Stability's image-to-video protocol. local: Stable "
                        "Video Diffusion in this process. auto: local when a model is set, remote when a "
                        "server is set, else remote if IMG2VID_BASE_URL or a key is configured, else local.",
                    },
                ),
                "server": (
                    "STRING",
                    {
                        "default": "",
                        "multiline": False,
                        "tooltip": "Remote: an img2vid server URL (http://host:8000), 'stability', or empty "
                        "for IMG2VID_BASE_URL / the config file. Keys come from IMG2VID_API_KEY, "
                        "STABILITY_API_KEY or the config file, never from a widget.",
                    },
                ),
                "model": (
                    "STRING",
                    {
                        "default": "",
                        "multiline": False,
                        "tooltip": "Local: a Hugging Face model id, a diffusers folder, a .safetensors file, or "
                        "a file in ComfyUI's checkpoints folder (svd_xt.safetensors). Empty: SVD-XT.",
                    },
                ),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": MAX_SEED, "tooltip": "0: a random seed."},
                ),
                "cfg_scale": (
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
                "motion_bucket_id": (
                    "INT",
                    {
                        "default": DEFAULT_MOTION_BUCKET_ID,
                        "min": mbi_low,
                        "max": mbi_high,
                        "step": 1,
                        "tooltip": "More is more motion.",
                    },
                ),
                "fit": (
                    FIT_CHOICES,
                    {
                        "default": FitMode.CROP.value,
                        "tooltip": "How an image of another size is fitted to the sizes the engine accepts: "
                        "crop (fill, no distortion), pad (black bars), stretch, or strict (refuse).",
                    },
                ),
            },
            "optional": {
                "frames": _optional_int("frames", "frames to make"),
                "steps": _optional_int("steps", "denoising steps"),
                "fps": _optional_int("fps", "frame rate, also the model's fps conditioning"),
                "noise_aug_strength": (
                    "FLOAT",
                    {
                        "default": DEFAULT_NOISE_AUG_STRENGTH,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "Local engine: noise added to the image; more frees the video from it.",
                    },
                ),
                "min_guidance_scale": (
                    "FLOAT",
                    {
                        "default": DEFAULT_MIN_GUIDANCE_SCALE,
                        "min": 0.0,
                        "max": float(RANGES["min_guidance_scale"][2]),
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "Local engine: guidance on the first frame (rising to cfg_scale on the last).",
                    },
                ),
                "decode_chunk_size": _optional_int("decode_chunk_size", "frames decoded at once (less memory)"),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES: tuple[str, ...] = ("IMAGE", "FLOAT", "INT") + (("VIDEO",) if _VIDEO_API else ())
    RETURN_NAMES: tuple[str, ...] = ("frames", "fps", "frame_counts") + (("video",) if _VIDEO_API else ())
    #: ``frame_counts`` and ``video`` hold one item per input image; for one image they act as single values.
    OUTPUT_IS_LIST: tuple[bool, ...] = (False, False, True) + ((True,) if _VIDEO_API else ())
    OUTPUT_TOOLTIPS: tuple[str, ...] = (
        "Every video's frames, one after another, in the order of the input images.",
        "The frame rate, read from the video.",
        "How many frames each video has, in order.",
    ) + (("Each video, with its frame rate, for ComfyUI's video nodes.",) if _VIDEO_API else ())
    FUNCTION = "generate"
    CATEGORY = "img2vid"
    DESCRIPTION = (
        "Turn an image into a short video with Stable Video Diffusion, on an img2vid server (or any server of "
        "Stability's image-to-video protocol) or locally. Keys come from the environment or the config file."
    )

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
        noise_aug_strength: float = DEFAULT_NOISE_AUG_STRENGTH,
        min_guidance_scale: float = DEFAULT_MIN_GUIDANCE_SCALE,
        decode_chunk_size: int = 0,
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
            chosen = choose_node_engine(engine, server, model)
        node_id = str(unique_id) if unique_id is not None else None
        try:
            videos = generate_videos(chosen, requests, node_id=node_id, secrets=secrets)
        finally:
            close_engine(chosen)
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
