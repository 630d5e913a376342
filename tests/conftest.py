"""Shared fixtures. This file's folder goes on sys.path, so test modules can import ``support``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from support.fake_protocol import FakeProtocolServer
from support.require_services import pytest_runtest_makereport  # noqa: F401 - a hook: CI's rule on skips


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that start processes (``live``, ``services``) run first, so that under ``-n`` the short files
    fill the end rather than one long file running alone; within a file the order is kept. Tests marked
    ``gpu`` are skipped on machines without CUDA (CI has none)."""
    slow_files = {item.path for item in items if item.get_closest_marker("live") or item.get_closest_marker("services")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files keep their own order
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        # The marker itself, not ``item.keywords``, which also holds every folder name on the test's path.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's own config file or keys."""
    monkeypatch.setenv("IMG2VID_CONFIG", str(tmp_path_factory.mktemp("config") / "config.toml"))
    for name in ("IMG2VID_BASE_URL", "IMG2VID_API_KEY", "STABILITY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_protocol_server() -> Iterator[FakeProtocolServer]:
    """A started scripted protocol server on 127.0.0.1 (see tests/support/fake_protocol.py)."""
    server = FakeProtocolServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_shared_engine_outlives_its_test() -> Iterator[None]:
    """An engine a test got from ``LocalEngine.shared`` (the CLI and the nodes do) is released after it,
    so no test sees another's warm model, settings or ComfyUI hooks. Only where torch is loaded already:
    the node tests also run without torch."""
    yield
    engine_module = sys.modules.get("img2vid.engines.local.engine")
    if engine_module is not None:
        engine_module.LocalEngine.close_shared()


@pytest.fixture(scope="session")
def tiny_engine() -> Iterator[Any]:
    """One loaded tiny ``LocalEngine`` (CPU, fp32, eager) for the session, for tests that only generate.
    A test that changes an engine (releases it, sets a speed or memory mode, places it elsewhere) builds
    its own."""
    pytest.importorskip("diffusers")
    from img2vid.engines.local import LocalEngine

    with LocalEngine("tiny", device="cpu", dtype="float32", speed="eager") as engine:
        yield engine


@pytest.fixture(scope="session")
def tiny_parts(tiny_engine: Any) -> Any:
    """The session engine's model parts, for tests of the pipeline's pieces; read them, never change them."""
    return tiny_engine.components()
