"""A small stand-in for the parts of ComfyUI the nodes touch, for tests (ComfyUI is not installable here).

It provides ``comfy.utils.ProgressBar`` (recording every update), ``comfy.model_management`` (the
interrupt flag, ``processing_interrupted``, ``throw_exception_if_processing_interrupted``,
``InterruptProcessingException``, ``get_torch_device``, which returns a :class:`Device` as ComfyUI returns a
``torch.device``) and ``server.PromptServer.instance`` (recording
``send_progress_text``). As in ComfyUI, the progress bar's hook raises the interrupt exception when the
bar is updated after Cancel was pressed. ``with_video=True`` adds ``comfy_api.latest``'s
``InputImpl.VideoFromComponents`` and ``Types.VideoComponents``.

Beyond those, each piece behaves as ComfyUI's own code does (read from ComfyUI's source; names kept):

- ``comfy.model_management``'s memory side: ``current_loaded_models``, ``free_memory(memory_required,
  device, keep_loaded)`` (unloads the least-used models on the device until ``get_free_memory`` reaches
  the request, then ``soft_empty_cache``; with nothing unloaded it still reads the device's free memory),
  ``unload_all_models`` (``free_memory(1e30, get_torch_device())``, which is what the "Free model and node
  cache" button reaches), ``minimum_inference_memory``, over pretend devices of ``vram`` bytes each
  (:meth:`ComfyStub.load_model` puts a ComfyUI model on one). As in ComfyUI, ``get_free_memory`` reads a
  CPU or ``mps`` device's free memory from the system's RAM (``ram`` bytes here) and takes anything else
  down its GPU path, a device *name* (a ``str``) included, so the name ``"cpu"`` fails there as torch
  fails it; models are matched by device object, never equal to a name, as ``torch.device`` compares;
- ``folder_paths``: ``get_filename_list`` (files with a model extension in a folder's paths, searched
  recursively, relative names, sorted), ``get_full_path``, ``get_folder_paths`` and
  ``add_model_folder_path``; ``diffusers`` is registered as ComfyUI registers it, with the pseudo-extension
  ``folder`` (so ``get_filename_list("diffusers")`` lists no model folder, as in ComfyUI);
- ``with_v3=True``: ``comfy_api.latest``'s ``io`` (``ComfyNode``, ``Schema``, the ``Input``/``Output``
  classes of the types the nodes use, ``Hidden``, ``NodeOutput``) and ``ComfyExtension``, turning a schema
  into V1 info the way ComfyUI does;
- :func:`load_custom_node`: ComfyUI's loader, in both of its ways of naming the module (before April 2025
  the folder's name, since then the folder's full path with dots replaced), V1 mappings first, then V3's
  ``comfy_entrypoint``;
- :class:`PromptRunner`: how ComfyUI decides whether a node runs or hands back its cached output
  (``IS_CHANGED``/``fingerprint_inputs`` called with the prompt's constants and ``None`` for links, the
  answer put into the node's cache key).

Use the ``comfy_stub`` fixture: it installs the modules into ``sys.modules`` for one test and removes
them afterwards.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import logging
import os
import sys
import threading
import traceback
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest

__all__ = ["ComfyStub", "Device", "install", "comfy_stub", "load_custom_node", "PromptRunner", "GiB"]

GiB = 1024**3
#: ComfyUI's ``folder_paths.supported_pt_extensions``.
MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


@dataclass
class ComfyStub:
    """The installed stand-in and what the nodes did with it."""

    bars: list[Any] = field(default_factory=list)
    texts: list[tuple[str, str | None]] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    modules: dict[str, types.ModuleType] = field(default_factory=dict)
    #: Called with (value, total) on every progress bar update, before ComfyUI's hook runs (tests press
    #: Cancel from here to stop a job at a known point).
    on_update: Any = None
    #: The id ComfyUI's execution context reports for the running node (nodes without a hidden id use it).
    executing_node: str | None = "5"
    #: The device ComfyUI runs its models on (``get_torch_device`` gives it as a :class:`Device`): ``cpu``
    #: as under ``--cpu``, ``cuda:0``, ``mps``, ``xpu:0`` ...
    torch_device: str = "cpu"
    #: Each pretend GPU's size, the system's RAM (the CPU's and mps's memory, as ComfyUI reads it), and what
    #: holds memory on a device outside ComfyUI's models (by device name).
    vram: int = 24 * GiB
    ram: int = 64 * GiB
    outside: dict[str, int] = field(default_factory=dict)
    #: What ComfyUI's model management did, in order: ("free_memory", required, device), ("unload", name).
    events: list[tuple[Any, ...]] = field(default_factory=list)
    _flag: threading.Event = field(default_factory=threading.Event)

    @property
    def model_management(self) -> types.ModuleType:
        return self.modules["comfy.model_management"]

    @property
    def InterruptProcessingException(self) -> type[Exception]:  # noqa: N802 - ComfyUI's name
        return self.model_management.InterruptProcessingException

    def interrupt(self) -> None:
        """What ComfyUI's Cancel button does."""
        self._flag.set()

    @property
    def interrupted(self) -> bool:
        return self._flag.is_set()

    def updates(self) -> list[tuple[int, int]]:
        """Every (value, total) any progress bar was set to, in order."""
        return [u for bar in self.bars for u in bar.updates]

    def load_model(self, name: str, size: int, device: str = "cuda:0") -> Any:
        """A model ComfyUI loaded itself (an SDXL checkpoint, say), holding ``size`` bytes on ``device``."""
        return self.model_management._load(name, size, Device.parse(device))

    def device(self, name: str) -> Device:
        """The device object ComfyUI would pass for ``name`` (``cuda:0``, ``cpu``)."""
        return Device.parse(name)

    def loaded_model_names(self) -> list[str]:
        return [m.name for m in self.model_management.current_loaded_models]


@dataclass(frozen=True)
class Device:
    """What ``torch.device`` is to ComfyUI: a type and an index, printed as ``cuda:0`` (``cpu``, ``mps``
    without an index), equal only to a device of the same type and index, never to a name."""

    type: str
    index: int | None = None

    @classmethod
    def parse(cls, name: str) -> Device:
        kind, _, index = name.partition(":")
        return cls(kind, int(index) if index else None)

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def install(with_video: bool = False, with_v3: bool = False) -> ComfyStub:
    """Build the stand-in modules (not yet in ``sys.modules``)."""
    stub = ComfyStub()

    comfy = types.ModuleType("comfy")
    comfy.__path__ = []  # a package, so ``import comfy.utils`` works

    mm = types.ModuleType("comfy.model_management")

    class InterruptProcessingException(Exception):
        pass

    def processing_interrupted() -> bool:
        return stub._flag.is_set()

    def interrupt_current_processing(value: bool = True) -> None:
        if value:
            stub._flag.set()
        else:
            stub._flag.clear()

    def throw_exception_if_processing_interrupted() -> None:
        if stub._flag.is_set():
            stub._flag.clear()  # ComfyUI clears the flag as it raises
            raise InterruptProcessingException()

    mm.InterruptProcessingException = InterruptProcessingException
    mm.processing_interrupted = processing_interrupted
    mm.interrupt_current_processing = interrupt_current_processing
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.get_torch_device = lambda: Device.parse(stub.torch_device)

    class LoadedModel:
        """ComfyUI's record of one model on a device."""

        def __init__(self, name: str, size: int, device: str) -> None:
            self.name, self.size, self.device = name, size, device

        def model_memory(self) -> int:
            return self.size

        def model_offloaded_memory(self) -> int:
            return 0

        def model_unload(self, memory_to_free: float | None = None) -> bool:
            stub.events.append(("unload", self.name))
            return True

    current_loaded_models: list[LoadedModel] = []

    def _load(name: str, size: int, device: Device) -> LoadedModel:
        model = LoadedModel(name, size, device)
        current_loaded_models.insert(0, model)
        return model

    def get_free_memory(dev: Any = None, torch_free_too: bool = False) -> Any:
        if dev is None:
            dev = mm.get_torch_device()
        if hasattr(dev, "type") and dev.type in ("cpu", "mps"):
            size = stub.ram  # ComfyUI: psutil.virtual_memory().available
        elif str(dev).partition(":")[0] in ("cpu", "mps"):
            # ComfyUI takes anything without a ``type`` down its GPU path (torch.cuda.memory_stats(dev)),
            # which refuses the name of the CPU.
            raise ValueError(f"Expected a cuda device, but got: {dev}")
        else:
            size = stub.vram  # ComfyUI: the GPU's free memory and what torch holds unused there
        name = str(dev)
        used = sum(m.size for m in current_loaded_models if str(m.device) == name) + stub.outside.get(name, 0)
        free = max(0, size - used)
        return (free, free) if torch_free_too else free

    def soft_empty_cache(force: bool = False) -> None:
        stub.events.append(("soft_empty_cache",))

    def minimum_inference_memory() -> float:
        return 1024 * 1024 * 1024 * 0.8 + 400 * 1024 * 1024

    def free_memory(memory_required: float, device: Any, keep_loaded: Sequence[Any] = ()) -> list[Any]:
        # ComfyUI: the least-used models on the device go first, each only while room is still short.
        stub.events.append(("free_memory", memory_required, str(device)))
        can_unload = []
        for i in range(len(current_loaded_models) - 1, -1, -1):
            model = current_loaded_models[i]
            if model.device == device and model not in keep_loaded:
                can_unload.append((-model.model_offloaded_memory(), sys.getrefcount(model), model.model_memory(), i))
        unloaded = []
        for *_, i in sorted(can_unload):
            memory_to_free = 0 if device is None else memory_required - mm.get_free_memory(device)
            if memory_to_free > 0 and current_loaded_models[i].model_unload(memory_to_free):
                unloaded.append(i)
        removed = [current_loaded_models.pop(i) for i in sorted(unloaded, reverse=True)]
        if removed:
            mm.soft_empty_cache()
        else:  # ComfyUI (unless its vram state is HIGH_VRAM): empties torch's cache if it holds much free
            mm.get_free_memory(device, torch_free_too=True)
        return removed

    def unload_all_models() -> None:
        mm.free_memory(1e30, mm.get_torch_device())

    mm.LoadedModel = LoadedModel
    mm.current_loaded_models = current_loaded_models
    mm._load = _load
    mm.get_free_memory = get_free_memory
    mm.soft_empty_cache = soft_empty_cache
    mm.minimum_inference_memory = minimum_inference_memory
    mm.free_memory = free_memory
    mm.unload_all_models = unload_all_models

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total: int, node_id: str | None = None) -> None:
            self.total = total
            self.node_id = node_id
            self.current = 0
            self.updates: list[tuple[int, int]] = []
            stub.bars.append(self)

        def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            self.updates.append((self.current, self.total))
            if stub.on_update is not None:
                stub.on_update(self.current, self.total)
            # ComfyUI's global progress hook raises once Cancel was pressed.
            throw_exception_if_processing_interrupted()

        def update(self, value: int) -> None:
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar
    comfy.utils = utils
    comfy.model_management = mm

    server = types.ModuleType("server")

    class _Instance:
        def send_progress_text(self, text: str, node_id: str | None, sid: str | None = None) -> None:
            stub.texts.append((text, node_id))

    class PromptServer:
        instance = _Instance()

    server.PromptServer = PromptServer

    execution = types.ModuleType("comfy_execution")
    execution.__path__ = []
    execution_utils = types.ModuleType("comfy_execution.utils")
    execution_utils.get_executing_context = lambda: (
        types.SimpleNamespace(node_id=stub.executing_node) if stub.executing_node is not None else None
    )
    execution.utils = execution_utils

    stub.modules = {
        "comfy": comfy,
        "comfy.utils": utils,
        "comfy.model_management": mm,
        "server": server,
        "comfy_execution": execution,
        "comfy_execution.utils": execution_utils,
    }

    stub.modules["folder_paths"] = _folder_paths()

    if with_video or with_v3:
        api = types.ModuleType("comfy_api")
        api.__path__ = []
        latest = types.ModuleType("comfy_api.latest")

        @dataclass
        class VideoComponents:
            images: Any
            audio: Any = None
            frame_rate: Any = None
            metadata: Any = None

        class VideoFromComponents:
            def __init__(self, components: VideoComponents) -> None:
                self.components = components
                stub.videos.append(self)

            def get_components(self) -> VideoComponents:
                return self.components

        latest.InputImpl = types.SimpleNamespace(VideoFromComponents=VideoFromComponents)
        latest.Types = types.SimpleNamespace(VideoComponents=VideoComponents)
        if with_v3:
            latest.io = _v3_io()
            latest.ComfyExtension = ComfyExtension
        api.latest = latest
        stub.modules.update({"comfy_api": api, "comfy_api.latest": latest})
    return stub


# ---------------------------------------------------------------------------------------- folder_paths


def _folder_paths() -> types.ModuleType:
    """ComfyUI's ``folder_paths`` for model folders: each name has paths and the extensions it lists."""
    module = types.ModuleType("folder_paths")
    module.supported_pt_extensions = set(MODEL_EXTENSIONS)
    module.folder_names_and_paths = {"checkpoints": ([], set(MODEL_EXTENSIONS)), "diffusers": ([], {"folder"})}

    def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        paths, extensions = module.folder_names_and_paths.setdefault(folder_name, ([], set(MODEL_EXTENSIONS)))
        if full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    def get_filename_list(folder_name: str) -> list[str]:
        paths, extensions = module.folder_names_and_paths[folder_name]
        found: set[str] = set()
        for base in paths:
            for root, dirs, files in os.walk(base, followlinks=True):
                dirs[:] = [d for d in dirs if d != ".git"]
                for name in files:
                    if not extensions or os.path.splitext(name)[1].lower() in extensions:
                        found.add(os.path.relpath(os.path.join(root, name), base))
        return sorted(found)

    def get_full_path(folder_name: str, filename: str) -> str | None:
        if folder_name not in module.folder_names_and_paths:
            return None
        filename = os.path.relpath(os.path.join("/", filename), "/")
        for base in module.folder_names_and_paths[folder_name][0]:
            full = os.path.join(base, filename)
            if os.path.isfile(full):
                return full
        return None

    def get_folder_paths(folder_name: str) -> list[str]:
        return module.folder_names_and_paths[folder_name][0][:]

    module.add_model_folder_path = add_model_folder_path
    module.get_folder_paths = get_folder_paths
    module.get_filename_list = get_filename_list
    module.get_full_path = get_full_path
    return module


# ---------------------------------------------------------------------------------------------- V3 API


class ComfyExtension(ABC):
    """``comfy_api.latest.ComfyExtension``."""

    async def on_load(self) -> None:  # noqa: B027 - ComfyUI's own hook is empty and optional, as here
        pass

    @abstractmethod
    async def get_node_list(self) -> list[type]: ...


def _prune(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _v3_io() -> types.ModuleType:
    """``comfy_api.latest.io``: the parts img2vid's nodes use, turning a schema into V1 info as ComfyUI does."""
    io = types.ModuleType("comfy_api.latest.io")

    class Hidden(str, Enum):
        unique_id = "UNIQUE_ID"
        prompt = "PROMPT"
        extra_pnginfo = "EXTRA_PNGINFO"

    class Input:
        io_type = ""
        _keys: tuple[str, ...] = ()

        def __init__(
            self,
            id: str,
            display_name: str | None = None,
            optional: bool = False,
            tooltip: str | None = None,
            **options: Any,
        ) -> None:
            unknown = set(options) - set(self._keys)
            if unknown:  # ComfyUI's constructors take fixed keywords
                raise TypeError(f"{type(self).__name__} got unexpected keyword(s) {sorted(unknown)}")
            self.id, self.display_name, self.optional, self.tooltip, self.options = (
                id,
                display_name,
                optional,
                tooltip,
                options,
            )

        def as_dict(self) -> dict[str, Any]:
            return _prune(
                {"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip}
            ) | _prune(self.options)

        def get_io_type(self) -> str:
            return self.io_type

    class Output:
        io_type = ""

        def __init__(
            self,
            id: str | None = None,
            display_name: str | None = None,
            tooltip: str | None = None,
            is_output_list: bool = False,
        ) -> None:
            self.id, self.display_name, self.tooltip, self.is_output_list = (
                id,
                display_name or id,
                tooltip,
                is_output_list,
            )

    def comfytype(io_type: str, keys: tuple[str, ...]) -> type:
        kind = type(io_type.title(), (), {"io_type": io_type})
        kind.Input = type("Input", (Input,), {"io_type": io_type, "_keys": keys})
        kind.Output = type("Output", (Output,), {"io_type": io_type})
        return kind

    io.Image = comfytype("IMAGE", ())
    io.Int = comfytype("INT", ("default", "min", "max", "step", "control_after_generate", "display_mode"))
    io.Float = comfytype("FLOAT", ("default", "min", "max", "step", "round", "display_mode"))
    io.String = comfytype("STRING", ("default", "multiline", "placeholder", "dynamic_prompts"))
    io.Combo = comfytype("COMBO", ("options", "default", "control_after_generate"))
    io.Video = comfytype("VIDEO", ())

    @dataclass
    class Schema:
        node_id: str
        display_name: str | None = None
        category: str = "sd"
        inputs: list[Any] = field(default_factory=list)
        outputs: list[Any] = field(default_factory=list)
        hidden: list[Any] = field(default_factory=list)
        description: str = ""

        def validate(self) -> None:
            ids = [i.id for i in self.inputs]
            out_ids = [o.id for o in self.outputs]
            if len(set(ids)) != len(ids) or len(set(out_ids)) != len(out_ids):
                raise ValueError("Input ids must be unique")

        def v1_input(self) -> dict[str, Any]:
            declared: dict[str, Any] = {"required": {}}
            for i in self.inputs:
                options = i.as_dict()
                options.pop("optional", None)  # as ComfyUI: V1 has sections instead
                declared.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), options)
            for h in self.hidden:
                declared.setdefault("hidden", {})[h.name] = (h.value,)
            return declared

    class NodeOutput:
        def __init__(self, *args: Any, ui: Any = None) -> None:
            self.args, self.ui = args, ui

        @property
        def result(self) -> tuple[Any, ...] | None:
            return self.args if self.args else None

    class HiddenHolder:
        def __init__(self, values: Mapping[str, Any]) -> None:
            self.unique_id = values.get(Hidden.unique_id)

    class ComfyNode:
        hidden: Any = None

        @classmethod
        def define_schema(cls) -> Schema:
            raise NotImplementedError

        @classmethod
        def execute(cls, **kwargs: Any) -> NodeOutput:
            raise NotImplementedError

        @classmethod
        def fingerprint_inputs(cls, **kwargs: Any) -> Any:
            raise NotImplementedError

        @classmethod
        def validate_inputs(cls, **kwargs: Any) -> Any:
            raise NotImplementedError

        @classmethod
        def GET_SCHEMA(cls) -> Schema:  # noqa: N802
            schema = cls.define_schema()
            schema.validate()
            return schema

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
            return cls.GET_SCHEMA().v1_input()

        @classmethod
        def PREPARE_CLASS_CLONE(cls, hidden_inputs: Mapping[str, Any]) -> type:  # noqa: N802
            return type(cls.__name__, (cls,), {"hidden": HiddenHolder(hidden_inputs)})

        @classmethod
        def EXECUTE_NORMALIZED(cls, **kwargs: Any) -> NodeOutput:  # noqa: N802
            result = cls.execute(**kwargs)
            return result if isinstance(result, NodeOutput) else NodeOutput(*result)

    def first_real_override(cls: type, name: str) -> Any:
        """ComfyUI's check that a V3 node defines ``name`` itself rather than inheriting ComfyNode's."""
        for klass in cls.__mro__:
            if klass is ComfyNode:
                return None
            if name in klass.__dict__:
                return getattr(cls, name)
        return None

    io.Hidden, io.Schema, io.NodeOutput, io.ComfyNode = Hidden, Schema, NodeOutput, ComfyNode
    io.first_real_override = first_real_override
    return io


# ------------------------------------------------------------------------------------------- the loader


def load_custom_node(module_path: str, algorithm: str = "current") -> tuple[bool, dict[str, Any], dict[str, str]]:
    """ComfyUI's ``load_custom_node`` for a folder: (success, node class mappings, display names).

    ``algorithm``: ``"folder-name"`` (ComfyUI before April 2025, and loaders like it: the module is named
    after the folder) or ``"current"`` (the folder's full path with dots replaced by ``_x_``). Both register
    the module in ``sys.modules`` before running it, and read V1 mappings first, then (current only) V3.
    Failures are logged as ComfyUI logs them, never raised.
    """
    log = logging.getLogger("comfyui")
    if algorithm == "folder-name":
        sys_module_name = os.path.basename(module_path)
    elif algorithm == "current":
        sys_module_name = module_path.replace(".", "_x_")
    else:
        raise ValueError(f"algorithm must be 'folder-name' or 'current', not {algorithm!r}")
    mappings: dict[str, Any] = {}
    names: dict[str, str] = {}
    try:
        spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys_module_name] = module
        spec.loader.exec_module(module)
        if getattr(module, "NODE_CLASS_MAPPINGS", None) is not None:
            mappings.update(module.NODE_CLASS_MAPPINGS)
            names.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
            return True, mappings, names
        if algorithm == "current" and hasattr(module, "comfy_entrypoint"):
            entrypoint = module.comfy_entrypoint
            extension = asyncio.run(entrypoint()) if inspect.iscoroutinefunction(entrypoint) else entrypoint()
            if not isinstance(extension, ComfyExtension):
                log.warning(f"comfy_entrypoint in {module_path} did not return a ComfyExtension, skipping.")
                return False, mappings, names

            async def node_list() -> list[type]:
                await extension.on_load()
                return await extension.get_node_list()

            for node_cls in asyncio.run(node_list()):
                schema = node_cls.GET_SCHEMA()
                mappings[schema.node_id] = node_cls
                if schema.display_name is not None:
                    names[schema.node_id] = schema.display_name
            return True, mappings, names
        log.warning(
            f"Skip {module_path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or comfy_entrypoint (need one)."
        )
        return False, mappings, names
    except Exception as e:  # noqa: BLE001 - as ComfyUI: log and go on with the next pack
        log.warning(traceback.format_exc())
        log.warning(f"Cannot import {module_path} module for custom nodes: {e}")
        return False, mappings, names


# ------------------------------------------------------------------------------------ caching (IS_CHANGED)


def _to_hashable(obj: Any) -> Any:
    """ComfyUI's ``to_hashable``: the cache key of a node's signature."""
    if isinstance(obj, (int, float, str, bool, bytes, type(None))):
        return obj
    if isinstance(obj, Mapping):
        return frozenset((_to_hashable(k), _to_hashable(v)) for k, v in sorted(obj.items()))
    if isinstance(obj, Sequence):
        return frozenset(zip(itertools.count(), [_to_hashable(i) for i in obj]))
    return float("nan")  # ComfyUI's Unhashable: never equal


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


class PromptRunner:
    """Queues prompts as ComfyUI's executor does for caching: a node runs only when its cache key is new.

    The key is ComfyUI's: the class, what ``IS_CHANGED`` (V3: ``fingerprint_inputs``) answered for the
    prompt's constants (``None`` for linked inputs, hidden inputs included), and every input, links as
    their source node's key. ``runs`` counts how often each node id really ran.
    """

    def __init__(self, mappings: Mapping[str, type]) -> None:
        self.mappings = dict(mappings)
        self.cache: dict[Any, tuple[Any, ...]] = {}
        self.runs: dict[str, int] = {}

    def _class(self, node: Mapping[str, Any]) -> type:
        return self.mappings[node["class_type"]]

    def _is_changed(self, node_id: str, node: Mapping[str, Any]) -> Any:
        cls = self._class(node)
        v3 = hasattr(cls, "GET_SCHEMA")
        if v3:
            name = "fingerprint_inputs" if _defined_below(cls, "fingerprint_inputs") else None
        else:
            name = "IS_CHANGED" if hasattr(cls, "IS_CHANGED") else None
        if name is None:
            return False
        inputs = {k: (None if _is_link(v) else v) for k, v in node["inputs"].items()}
        hidden = cls.INPUT_TYPES().get("hidden", {})
        if v3:
            function = getattr(cls.PREPARE_CLASS_CLONE({"UNIQUE_ID": node_id}), name)
        else:
            inputs.update({k: node_id for k, v in hidden.items() if v == "UNIQUE_ID"})
            function = getattr(cls, name)
        try:
            return [function(**inputs)]
        except Exception as e:  # noqa: BLE001 - as ComfyUI: a failing IS_CHANGED means "changed"
            logging.getLogger("comfyui").warning(f"WARNING: {e}")
            return float("nan")

    def _key(self, prompt: Mapping[str, Any], node_id: str) -> Any:
        """ComfyUI's ``get_node_signature``: the node's own signature, then each ancestor's, in a fixed order;
        a link names its source by its place in that order."""
        ancestors: list[str] = []

        def walk(current: str) -> None:
            for name in sorted(prompt[current]["inputs"]):
                value = prompt[current]["inputs"][name]
                if _is_link(value) and value[0] not in ancestors:
                    ancestors.append(value[0])
                    walk(value[0])

        walk(node_id)

        def immediate(current: str) -> list[Any]:
            node = prompt[current]
            signature: list[Any] = [node["class_type"], self._is_changed(current, node)]
            for name in sorted(node["inputs"]):
                value = node["inputs"][name]
                signature.append(
                    (name, ("ANCESTOR", ancestors.index(value[0]), value[1]) if _is_link(value) else value)
                )
            return signature

        return _to_hashable([immediate(node_id)] + [immediate(a) for a in ancestors])

    def run(self, prompt: Mapping[str, Any], node_id: str) -> tuple[Any, ...]:
        """The outputs of ``node_id`` for this prompt: cached, or from running it (and its sources)."""
        key = self._key(prompt, node_id)
        if key in self.cache:
            return self.cache[key]
        node = prompt[node_id]
        cls = self._class(node)
        inputs = {k: (self.run(prompt, v[0])[v[1]] if _is_link(v) else v) for k, v in node["inputs"].items()}
        if hasattr(cls, "GET_SCHEMA"):
            clone = cls.PREPARE_CLASS_CLONE({"UNIQUE_ID": node_id})
            outputs = tuple(clone.EXECUTE_NORMALIZED(**inputs).args)
        else:
            hidden = cls.INPUT_TYPES().get("hidden", {})
            inputs.update({k: node_id for k, v in hidden.items() if v == "UNIQUE_ID"})
            outputs = tuple(getattr(cls(), cls.FUNCTION)(**inputs))
        self.runs[node_id] = self.runs.get(node_id, 0) + 1
        self.cache[key] = outputs
        return outputs


def _defined_below(cls: type, name: str) -> bool:
    io = sys.modules.get("comfy_api.latest").io  # type: ignore[union-attr]
    return io.first_real_override(cls, name) is not None


@pytest.fixture
def comfy_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[ComfyStub]:
    """ComfyUI's stand-in in ``sys.modules`` for one test."""
    stub = install()
    for name, module in stub.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield stub
