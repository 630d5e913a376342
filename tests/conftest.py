"""Shared fixtures. This file's folder goes on sys.path, so test modules can import ``support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.fake_protocol import FakeProtocolServer


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped on machines without CUDA (CI has none)."""
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
