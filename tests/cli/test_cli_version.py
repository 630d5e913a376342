"""``img2vid --version``: the version a server's /info gives, exit 0 (tests/test_light_import.py checks it
imports nothing heavy)."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import img2vid
from img2vid.cli import app
from support.server_harness import subprocess_env


def test_version_prints_the_package_version_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"img2vid {img2vid.__version__}"


def test_python_m_img2vid_version_answers_the_same() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "img2vid", "--version"], env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"img2vid {img2vid.__version__}"

