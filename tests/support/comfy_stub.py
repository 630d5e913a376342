"""A small stand-in for the parts of ComfyUI the nodes touch, for tests (ComfyUI is not installable here).

It provides ``comfy.utils.ProgressBar`` (recording every update), ``comfy.model_management`` (the
interrupt flag, ``processing_interrupted``, ``throw_exception_if_processing_interrupted``,
``InterruptProcessingException``, ``get_torch_device``) and ``server.PromptServer.instance`` (recording
``send_progress_text``). As in ComfyUI, the progress bar's hook raises the interrupt exception when the
bar is updated after Cancel was pressed. ``with_video=True`` adds ``comfy_api.latest``'s
``InputImpl.VideoFromComponents`` and ``Types.VideoComponents``.

Use the ``comfy_stub`` fixture: it installs the modules into ``sys.modules`` for one test and removes
them afterwards.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = ["ComfyStub", "install", "comfy_stub"]


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


def install(with_video: bool = False) -> ComfyStub:
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
    mm.get_torch_device = lambda: "cpu"

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

    if with_video:
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
        api.latest = latest
        stub.modules.update({"comfy_api": api, "comfy_api.latest": latest})
    return stub


@pytest.fixture
def comfy_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[ComfyStub]:
    """ComfyUI's stand-in in ``sys.modules`` for one test."""
    stub = install()
    for name, module in stub.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield stub
