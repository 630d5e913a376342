"""The core and the CLI start fast: importing them, or answering ``img2vid --version``, pulls in no torch,
diffusers, transformers or FastAPI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import img2vid

HEAVY = ("torch", "diffusers", "transformers", "fastapi", "starlette", "sqlalchemy", "celery")


def test_core_and_cli_import_light() -> None:
    code = (
        "import sys, json; import img2vid, img2vid.cli, img2vid.engines, img2vid.comfy; "
        "from img2vid import VideoRequest, Video, errors; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    src = str(Path(img2vid.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": src}
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import sys, json\n"
        "from img2vid.cli import main\n"
        "sys.argv = ['img2vid', '--version']\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert stop.code in (0, None), stop.code\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    src = str(Path(img2vid.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": src}
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"img2vid {img2vid.__version__}"
    assert json.loads(lines[-1]) == []
