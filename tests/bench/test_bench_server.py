"""``bench/server.py``: a server that never becomes ready is stopped, not left running behind the benchmark."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

pytest.importorskip("fastapi")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "server.py"


def test_a_server_that_never_answers_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_server", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    started: list[subprocess.Popen[bytes]] = []

    def hung_server(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return started[-1]

    def unreachable(*args: object, **kwargs: object) -> None:
        raise httpx.ConnectError("refused")

    clock = itertools.count(step=50.0)
    fake_subprocess = SimpleNamespace(run=subprocess.run, Popen=hung_server, TimeoutExpired=subprocess.TimeoutExpired)
    monkeypatch.setattr(module, "subprocess", fake_subprocess)
    monkeypatch.setattr(module, "httpx", SimpleNamespace(get=unreachable, TransportError=httpx.TransportError))
    monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=lambda: next(clock), sleep=lambda _seconds: None))
    try:
        with pytest.raises(SystemExit, match="did not start"):
            module.Server(tmp_path, [], {})
        assert len(started) == 1 and started[0].poll() is not None
    finally:
        for process in started:
            process.kill()
            process.wait()
