"""The node pack loads as users install it: any folder name, ComfyUI's old and current loaders, V1 or V3.

Each case runs in its own Python, so that ``sys.modules`` is as clean as in a starting ComfyUI: the pack's
folder holds a copy of the root ``__init__.py``, the requirements and ``src/``, and nothing else puts
img2vid on the path (no PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
NODES = ["Img2VidImageToVideo", "SaltAIStableVideoDiffusion"]

SCRIPT = """
import json, logging, sys
sys.path.insert(0, {tests!r})
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
sys.path[1:1] = {extra_path!r}
from support.comfy_stub import install, load_custom_node
stub = install(with_v3={v3!r})
sys.modules.update(stub.modules)
for name in {blocked!r}:
    sys.modules[name] = None  # as if the package were not installed
ok, mappings, names = load_custom_node({path!r}, {algorithm!r})
print("RESULT " + json.dumps({{
    "ok": ok,
    "nodes": sorted(mappings),
    "names": names,
    "v3": sorted({{hasattr(cls, "GET_SCHEMA") for cls in mappings.values()}}),
    "package": getattr(sys.modules.get("img2vid"), "__file__", None),
}}))
"""


def _pack(tmp_path: Path, folder: str) -> Path:
    """The repository as a clone into ``custom_nodes/<folder>`` (``src`` linked, the rest copied)."""
    pack = tmp_path / "ComfyUI" / "custom_nodes" / folder
    pack.mkdir(parents=True)
    shutil.copy(ROOT / "__init__.py", pack / "__init__.py")
    shutil.copy(ROOT / "requirements.txt", pack / "requirements.txt")
    (pack / "src").symlink_to(ROOT / "src", target_is_directory=True)
    return pack


def _load(
    pack: Path, algorithm: str, *, v3: bool = False, blocked: tuple[str, ...] = (), extra_path: tuple[str, ...] = ()
) -> tuple[dict, str]:
    code = SCRIPT.format(
        tests=str(TESTS), v3=v3, blocked=list(blocked), path=str(pack), algorithm=algorithm, extra_path=list(extra_path)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=pack.parents[1], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (found,) = [json.loads(line[len("RESULT ") :]) for line in lines if line.startswith("RESULT ")]
    return found, "\n".join(line for line in lines if not line.startswith("RESULT "))


@pytest.mark.parametrize("folder", ["img2vid", "ComfyUI-img2vid", "img2vid-main"])
@pytest.mark.parametrize(
    ("algorithm", "v3"),
    [("folder-name", False), ("current", False), ("current", True)],
    ids=["before-2025-04", "current-v1", "current-v3"],
)
def test_the_nodes_load_whatever_the_folder_is_called(tmp_path, folder, algorithm, v3):
    pack = _pack(tmp_path, folder)

    found, log = _load(pack, algorithm, v3=v3)

    assert found["ok"], log
    assert found["nodes"] == NODES
    assert found["names"] == {
        "Img2VidImageToVideo": "Image to Video (img2vid)",
        "SaltAIStableVideoDiffusion": "Stable Video Diffusion",
    }
    assert found["v3"] == [v3]  # the V3 classes where ComfyUI has the V3 API, V1 elsewhere
    # The package that runs is the pack's own, even when the pack's folder shares its name.
    assert found["package"] == str(pack / "src" / "img2vid" / "__init__.py")
    assert "WARNING" not in log


def test_a_folder_called_img2vid_on_the_import_path_does_not_shadow_the_package(tmp_path):
    # Some launchers put custom_nodes itself on sys.path, where the folder img2vid looks like the package.
    pack = _pack(tmp_path, "img2vid")

    found, log = _load(pack, "folder-name", extra_path=(str(pack.parent),))

    assert found["ok"] and found["nodes"] == NODES, log
    assert found["package"] == str(pack / "src" / "img2vid" / "__init__.py")


@pytest.mark.parametrize("algorithm", ["folder-name", "current"])
def test_a_missing_package_is_one_line_in_the_log_and_an_import_failure(tmp_path, algorithm):
    pack = _pack(tmp_path, "img2vid")

    found, log = _load(pack, algorithm, blocked=("httpx",))

    assert not found["ok"] and found["nodes"] == []  # ComfyUI lists the pack as IMPORT FAILED
    ours = [line for line in log.splitlines() if " img2vid: " in line]
    assert len(ours) == 1, log
    assert ours[0].startswith("WARNING img2vid: img2vid: nodes not loaded: the package httpx is missing")
    assert f"-m pip install -r {pack / 'requirements.txt'}" in ours[0]
    assert "Traceback" not in log
