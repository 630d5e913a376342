"""The local engine's memory, made known to ComfyUI's model management.

ComfyUI keeps its own models (an SDXL checkpoint, say) on the GPU between runs and frees room for the
next one through ``comfy.model_management.free_memory(memory_required, device)``; its "Free model and
node cache" button reaches the same function through ``unload_all_models()`` (``free_memory(1e30, …)``).
It has no registry for memory held outside its own model objects, so img2vid takes part from both sides:

- before the local engine moves its weights to the device, it asks ``free_memory`` for the weights plus
  ComfyUI's minimum inference memory, as ComfyUI's own loader does for its models (:func:`make_room`), on
  whichever device ComfyUI runs its models: a CUDA or ROCm GPU, Apple's ``mps``, Intel's ``xpu``, or the
  CPU when ComfyUI was started with ``--cpu`` (ComfyUI reads free memory there from the system's RAM);
- ``free_memory`` is wrapped once per process (:func:`watch_comfyui`): when ComfyUI still lacks room after
  unloading its own models, or unloads everything, img2vid's engines on that device are released;
- a run the user interrupted releases its engine too (:func:`release_after_interrupt`).

Wrapping ``free_memory`` is the one place img2vid changes ComfyUI; the wrapper calls the original first and
never fails ComfyUI's call. Nothing here runs outside ComfyUI, and nothing here imports torch.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .host import model_management

__all__ = ["attach", "make_room", "watch_comfyui", "release_engines", "release_after_interrupt"]

log = logging.getLogger("img2vid.comfy")

#: What ComfyUI's own loader adds on top of a model's size (1.1x), used the same way here.
_WEIGHT_FACTOR = 1.1
#: ComfyUI's ``minimum_inference_memory()`` where a ComfyUI lacks the function (0.8 GiB + its reserve).
_FALLBACK_INFERENCE_BYTES = int(1.2 * 1024**3)

_engines: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def _device_key(device: Any) -> tuple[str, int]:
    """``cuda:1`` as ``("cuda", 1)``; a device named without an index (torch's ``cuda``, ``mps``, ``cpu``) is
    that kind's device 0, the one torch means by it unless told otherwise."""
    kind, _, index = str(device).partition(":")
    return kind, int(index) if index.isdigit() else 0


def _same_device(a: Any, b: Any) -> bool:
    """ComfyUI's ``cuda:0`` (``xpu:0``) and torch's ``cuda`` (``xpu``) name one device; ``None`` (ComfyUI:
    any device) matches all."""
    if a is None or b is None:
        return True
    return _device_key(a) == _device_key(b)


def _comfy_device(mm: Any, device: Any) -> Any | None:
    """ComfyUI's own object for ``device`` where ComfyUI runs its models there, else ``None``.

    ComfyUI's functions want its own device object: its model list compares torch devices (never equal to
    a name), and ``get_free_memory`` takes a name down its GPU path, which fails for the CPU's."""
    try:
        own = mm.get_torch_device()
    except Exception:  # noqa: BLE001 - a ComfyUI that cannot name its device manages none for us
        return None
    return own if _same_device(own, device) else None


def make_room(device: Any, weight_bytes: int) -> None:
    """Ask ComfyUI to unload its models until the weights and a run fit on ``device``.

    Asked on the device ComfyUI runs its models on (``get_torch_device``), whichever it is: a GPU, ``mps``,
    ``xpu``, or the CPU under ``--cpu``, where ComfyUI answers the same call with the system's RAM as free
    memory (its "Free model and node cache" button makes this call there too), and the wrapper below then
    releases another img2vid model held in RAM when both do not fit. Not on a device ComfyUI runs no models
    on (the CPU beside ComfyUI's GPU): it has nothing to unload there, and its own loader never asks there.
    """
    mm = model_management()
    if mm is None or not callable(getattr(mm, "free_memory", None)):
        return
    own = _comfy_device(mm, device)
    if own is None:
        log.debug("img2vid: %s is not the device ComfyUI runs its models on; no room asked", device)
        return
    inference: Callable[[], int] | None = getattr(mm, "minimum_inference_memory", None)
    extra = int(inference()) if inference is not None else _FALLBACK_INFERENCE_BYTES
    needed = weight_bytes * _WEIGHT_FACTOR + extra
    log.info("img2vid: asking ComfyUI for %.1f GiB on %s for the local model", needed / 1024**3, device)
    mm.free_memory(needed, own)


def release_engines(device: Any = None) -> int:
    """Release every loaded img2vid engine on ``device`` (all devices for ``None``); how many were."""
    released = 0
    for engine in list(_engines):
        if getattr(engine, "loaded", False) and _same_device(device, getattr(engine, "device", None)):
            if engine.release():
                released += 1
    if released:
        log.info("img2vid: released %d local model(s) for ComfyUI", released)
    return released


def watch_comfyui() -> None:
    """Wrap ComfyUI's ``free_memory`` (once per process) so that its unloading reaches img2vid's engines."""
    mm = model_management()
    original = getattr(mm, "free_memory", None)
    if mm is None or not callable(original) or getattr(original, "_img2vid_watch", False):
        return
    with _lock:
        original = mm.free_memory
        if getattr(original, "_img2vid_watch", False):
            return

        def free_memory(memory_required: Any, device: Any, *args: Any, **kwargs: Any) -> Any:
            unloaded = original(memory_required, device, *args, **kwargs)
            try:
                _release_if_short(mm, memory_required, device)
            except Exception:  # noqa: BLE001 - ComfyUI's call must not fail because of img2vid
                log.warning("img2vid: could not release the local model", exc_info=True)
            return unloaded

        free_memory._img2vid_watch = True  # type: ignore[attr-defined]
        free_memory.__wrapped__ = original  # type: ignore[attr-defined]
        free_memory.__doc__ = original.__doc__
        mm.free_memory = free_memory


def _release_if_short(mm: Any, memory_required: Any, device: Any) -> None:
    """After ComfyUI unloaded what it could: release img2vid's engines if the device still lacks room."""
    if not any(
        getattr(e, "loaded", False) and _same_device(device, getattr(e, "device", None)) for e in list(_engines)
    ):
        return
    get_free = getattr(mm, "get_free_memory", None)
    if device is not None and callable(get_free) and get_free(device) >= memory_required:
        return
    if release_engines(device):
        empty = getattr(mm, "soft_empty_cache", None)
        if callable(empty):
            empty()


def attach(engine: Any) -> None:
    """Make a local engine that is about to run inside ComfyUI known to ComfyUI's model management."""
    if model_management() is None or not hasattr(engine, "release"):
        return  # a remote engine holds no device memory; outside ComfyUI there is nobody to tell
    engine.make_room = make_room
    _engines.add(engine)
    watch_comfyui()


def release_after_interrupt(engine: Any) -> None:
    """The user stopped a run: give the local model's memory back (the next run loads it again)."""
    if engine in _engines and getattr(engine, "loaded", False) and engine.release():
        log.info("img2vid: released the local model after the interrupt")
        mm = model_management()
        empty = getattr(mm, "soft_empty_cache", None)
        if callable(empty):
            empty()
