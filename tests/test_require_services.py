"""CI's rule on skips (tests/support/require_services.py): with ``IMG2VID_REQUIRE_SERVICES=1`` a skipped test
marked ``services`` or ``live`` fails the run, whether it skipped by marker, in a fixture or in its body; a
``gpu`` test, an unmarked one and an expected failure may still skip. Without the variable, nothing changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.server_harness import subprocess_env

SAMPLE = '''
import pytest

@pytest.fixture
def redis():
    pytest.skip("redis-server is not installed on this machine")

@pytest.mark.services
def test_needs_redis(redis):
    pass

@pytest.mark.live
def test_starts_a_browser():
    pytest.importorskip("no_such_module_here")

@pytest.mark.services
@pytest.mark.skipif(True, reason="no PostgreSQL")
def test_skipped_by_marker():
    pass

@pytest.mark.services
@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("needs a CUDA GPU")

def test_plain_skip():
    pytest.skip("not about services")

@pytest.mark.live
@pytest.mark.xfail(reason="known", run=False)
def test_expected_to_fail():
    pass

@pytest.mark.services
def test_runs():
    pass
'''


def _run(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfsEx", "-p", "no:cacheprovider", "-p", "support.require_services",
         "-o", "addopts=", "-o", "markers=services\nlive\ngpu", "test_sample.py"],  # fmt: skip
        cwd=folder,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    return tmp_path


def test_with_the_variable_a_skipped_services_or_live_test_fails_the_run(sample: Path) -> None:
    done = _run(sample, IMG2VID_REQUIRE_SERVICES="1")
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 failed, 1 passed, 2 skipped, 1 xfailed, 2 errors" in out, out
    for name in ("test_needs_redis", "test_starts_a_browser", "test_skipped_by_marker"):
        assert name in out
    assert "redis-server is not installed" in out and "IMG2VID_REQUIRE_SERVICES=1" in out


def test_without_the_variable_skips_stay_skips(sample: Path) -> None:
    done = _run(sample, IMG2VID_REQUIRE_SERVICES="")
    assert done.returncode == 0, done.stdout
    assert "1 passed, 5 skipped, 1 xfailed" in done.stdout, done.stdout
