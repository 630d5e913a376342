"""Loading a model into :class:`Components`: a hub id, a diffusers folder, a single-file checkpoint, or tiny.

Every way a model can be missing or broken ends here as a :class:`~img2vid.errors.ModelError` that says
what to do (log in and accept the licence, download once while online, point ``--model`` at a folder or
checkpoint), raised ``from`` the library's error, never as a traceback from inside huggingface_hub or
safetensors. The hub is reached only for a hub id that is not already cached, and only through
huggingface_hub's own client, which honours ``HF_HUB_OFFLINE`` and ``HF_TOKEN``. This module never
chooses a device: the engine passes one in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import ModelError
from ...families import SVD
from ...model_names import TINY_NAME, describe_model
from .components import Components
from .configs import CLIP_MEAN, CLIP_STD, SVD_SCHEDULER

__all__ = [
    "DEFAULT_MODEL",
    "TINY_NAME",
    "load_components",
    "place_components",
    "describe_model",
    "download_index",
    "download_pipeline",
]

#: SVD-XT on the hub, as the family table names it.
DEFAULT_MODEL = SVD.hub_repo

#: Folders a diffusers SVD model has (feature_extractor is optional: its normalisation is CLIP's).
_SUBFOLDERS = ("unet", "vae", "image_encoder", "scheduler")
_WHAT_TO_DO = (
    "pass --model a diffusers folder, a short name (svd-xt, wan2.2-ti2v-5b, ltx-video, ...) or a .safetensors "
    "checkpoint (svd_xt.safetensors), or --model tiny (tiny-wan2.2-ti2v-5b, tiny-ltx-video, ...) for an offline smoke run"
)


def load_components(model: str, *, half: bool = False) -> Components:
    """The model's components on the CPU (placement is a separate step).

    ``half``: the engine will run in fp16/bf16, so a hub model's fp16 files are enough (half the
    download), and a folder's fp16 files are preferred where it has them.
    """
    kind = describe_model(model)
    if kind == "tiny":
        from .tiny import build_tiny

        return build_tiny()
    if kind == "folder":
        return _load_folder(Path(model).expanduser(), source=model, half=half)
    if kind == "checkpoint":
        return _load_single_file(Path(model).expanduser())
    if kind == "hub":
        return _load_folder(_download(model, half=half), source=model, half=half)
    raise ModelError(
        f"no such file or folder: {model} (a model is a hub id like {DEFAULT_MODEL}, a diffusers folder, "
        f"a .safetensors checkpoint or 'tiny'); {_WHAT_TO_DO}"
    )


# ------------------------------------------------------------------------------------------------ hub


def _download(repo_id: str, *, half: bool = False) -> Path:
    """The cached snapshot of a hub model, downloading it if allowed (only the files SVD needs)."""
    if half:
        folder = _snapshot(repo_id, ["model_index.json", "*/*.json", "*/*.fp16.safetensors"], [])
        if _fp16_variant(folder):
            return folder
    return _snapshot(repo_id, ["model_index.json", "*/*.json", "*/*.safetensors"], ["*.fp16.safetensors"])


def download_index(repo_id: str) -> Path:
    """A hub model's ``model_index.json`` alone (cached), to learn its family before the weights."""
    return _snapshot(repo_id, ["model_index.json"], [])


def download_pipeline(repo_id: str) -> Path:
    """The cached snapshot of a Wan or LTX-Video repository: configs, tokenizer files and safetensors
    weights (never pickled ``.bin``/``.pth`` copies)."""
    return _snapshot(repo_id, ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.model", "*/*.txt"], ["*.bin", "*.pth"])


def _fp16_variant(folder: Path) -> bool:
    return all(any((folder / sub).glob("*.fp16.safetensors")) for sub in ("unet", "vae", "image_encoder"))


def _snapshot(repo_id: str, allow: list[str], ignore: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    licence = f"https://huggingface.co/{repo_id}"
    try:
        folder = snapshot_download(repo_id, allow_patterns=allow, ignore_patterns=ignore or None)
    except GatedRepoError as error:
        raise ModelError(
            f"{repo_id} is gated: accept its licence at {licence} with your Hugging Face account, then log in "
            "with `hf auth login` or set HF_TOKEN to a token of that account"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelError(
            f"no model {repo_id!r} on the Hugging Face hub (or it is private: log in with `hf auth login` or set "
            f"HF_TOKEN), and no folder or file of that name here; check the name, or {_WHAT_TO_DO}"
        ) from error
    except LocalEntryNotFoundError as error:
        gated = (
            f"; it is gated, so first accept the licence at {licence} and set HF_TOKEN"
            if repo_id.lower().startswith("stabilityai/stable-video-diffusion")
            else ""
        )
        raise ModelError(
            f"{repo_id} is not a folder or file here, nor downloaded, and the hub cannot be reached (offline, or "
            "HF_HUB_OFFLINE is set): "
            f"download it once while online (`hf download {repo_id}`{gated}), or {_WHAT_TO_DO}"
        ) from error
    except HFValidationError as error:
        raise ModelError(f"{repo_id!r} is not a valid hub id; {_WHAT_TO_DO}") from error
    except (HfHubHTTPError, OSError) as error:
        raise ModelError(
            f"could not download {repo_id}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; "
            f"try again, or {_WHAT_TO_DO}"
        ) from error
    return Path(folder)


# --------------------------------------------------------------------------------------------- folder


def _load_folder(folder: Path, *, source: str, half: bool = False) -> Components:
    missing = [name for name in _SUBFOLDERS if not (folder / name / _config_name(name)).is_file()]
    if missing:
        raise ModelError(
            f"{source} is not a diffusers Stable Video Diffusion folder: missing "
            + ", ".join(f"{name}/{_config_name(name)}" for name in missing)
            + " (expected unet/, vae/, image_encoder/ and scheduler/, as save_pretrained writes them)"
        )
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionModelWithProjection

    variant = "fp16" if half and _fp16_variant(folder) else None
    try:
        unet = UNetSpatioTemporalConditionModel.from_pretrained(folder, subfolder="unet", variant=variant)
        vae = AutoencoderKLTemporalDecoder.from_pretrained(folder, subfolder="vae", variant=variant)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder, subfolder="image_encoder", variant=variant)
        scheduler = EulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"cannot load the model in {source}: {first}; the folder may be incomplete or corrupt "
            "(download it again, or save it again with save_pretrained)"
        ) from error
    for model in (unet, vae, image_encoder):
        model.eval().requires_grad_(False)
    mean, std = _clip_normalisation(folder)
    return Components(
        unet=unet,
        vae=vae,
        image_encoder=image_encoder,
        scheduler=scheduler,
        source=source,
        default_frames=int(unet.config["num_frames"]),
        clip_mean=mean,
        clip_std=std,
    )


def _config_name(subfolder: str) -> str:
    return "scheduler_config.json" if subfolder == "scheduler" else "config.json"


def _clip_normalisation(folder: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    config = folder / "feature_extractor" / "preprocessor_config.json"
    try:
        data = json.loads(config.read_text())
        mean, std = tuple(float(x) for x in data["image_mean"]), tuple(float(x) for x in data["image_std"])
        if len(mean) == 3 and len(std) == 3:
            return mean, std  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return CLIP_MEAN, CLIP_STD


# ---------------------------------------------------------------------------------------- single file


def _load_single_file(path: Path) -> Components:
    if not path.is_file():
        raise ModelError(f"no such checkpoint file: {path}; {_WHAT_TO_DO}")
    if path.suffix.lower() != ".safetensors":
        raise ModelError(
            f"{path.name}: only .safetensors checkpoints are read (pickled {path.suffix} files can run code "
            "when loaded); use the .safetensors release of the model (svd_xt.safetensors)"
        )
    from diffusers import EulerDiscreteScheduler
    from safetensors import SafetensorError, safe_open

    from .checkpoint import from_single_file, match_architecture

    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            arch, problem = match_architecture(shapes)
            if problem is not None:
                raise ModelError(
                    f"{path.name} is not a Stable Video Diffusion checkpoint img2vid recognises ({problem}); "
                    "expected the layout of svd.safetensors / svd_xt.safetensors"
                )
            wanted = _wanted_keys(shapes)
            tensors = {key: handle.get_tensor(key) for key in wanted}
    except SafetensorError as error:
        raise ModelError(
            f"cannot read {path}: it is not a valid safetensors file ({error}); the download may be truncated "
            "or corrupt: download it again"
        ) from error
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {path}: {error}; download it again") from error
    try:
        unet, vae, image_encoder = from_single_file(tensors, arch)
    except (RuntimeError, KeyError, ValueError) as error:
        raise ModelError(f"cannot load {path.name}: {str(error).splitlines()[0]}; the file may be corrupt") from error
    unet.float()
    vae.float()
    image_encoder.float()
    for model in (unet, vae, image_encoder):
        model.eval().requires_grad_(False)
    if arch.name == "tiny":
        frames, steps = int(arch.unet["num_frames"]), 2
    else:
        # SVD and SVD-XT share one architecture; only the name tells the frame count each was trained for.
        frames, steps = (25 if "xt" in path.stem.lower() else 14), 25
    unet.register_to_config(num_frames=frames)
    return Components(
        unet=unet,
        vae=vae,
        image_encoder=image_encoder,
        scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER),
        source=str(path),
        default_frames=frames,
        default_steps=steps,
    )


def _wanted_keys(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    from .checkpoint import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

    return [k for k in shapes if k.startswith((UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX))]


# ------------------------------------------------------------------------------------------ placement


def place_components(parts: Components, device: torch.device, dtype: torch.dtype, *, offload: bool) -> Components:
    """Cast to ``dtype`` and move to ``device`` (or keep on the CPU when offloading), in place.

    In fp16 the VAE's encoder stays in fp32, as diffusers does with ``force_upcast``: SVD's VAE overflows
    in fp16 when encoding. The decoder runs in fp16, again as diffusers does.
    """
    home = torch.device("cpu") if offload else device
    for model in (parts.unet, parts.image_encoder, parts.vae):
        # Casting only when needed keeps diffusers from warning about a cast that changes nothing.
        if model.dtype != dtype:
            model.to(dtype=dtype)
        model.to(device=home)
    if dtype == torch.float16 and getattr(parts.vae.config, "force_upcast", False):
        parts.vae.encoder.to(dtype=torch.float32)
        parts.vae.quant_conv.to(dtype=torch.float32)
    return parts


def model_scale(parts: Components) -> float:
    """Activation size relative to SVD's, from the VAE decoder's widest level (for memory planning)."""
    return max(parts.vae.config.block_out_channels) / 512.0


