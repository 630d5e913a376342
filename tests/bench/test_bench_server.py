"""``bench/server.py``: a server that never becomes ready is stopped, not left running behind the benchmark,
and the benchmark takes its harness from tests/support (no copies of it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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

    fake_subprocess = SimpleNamespace(run=subprocess.run, Popen=hung_server, TimeoutExpired=subprocess.TimeoutExpired)
    monkeypatch.setattr(module, "subprocess", fake_subprocess)
    try:
        with pytest.raises(SystemExit, match="did not start"):
            module.Server(tmp_path, [], {}, start_timeout=0.5)
        assert len(started) == 1 and started[0].poll() is not None
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_the_benchmarks_use_the_tests_harness_and_keep_no_copy_of_it() -> None:
    bench = BENCH.parent
    support = Path(__file__).resolve().parents[1] / "support"
    sources = {path: path.read_text() for path in [*bench.glob("*.py"), *support.glob("*.py")]}
    defined = [path.name for path, text in sources.items() if "def free_port" in text or "def _free_port" in text]
    assert defined == ["server_harness.py"]
    for script in ("server.py", "scale.py"):
        text = (bench / script).read_text()
        assert "from support.server_harness import" in text, script
        assert "def _png" not in text and "def _free_port" not in text and "socket.socket()" not in text, script
        assert '"/healthz"' not in text, script  # the start-up wait is support.server_harness.wait_healthy
