"""What the Comfy registry and ComfyUI's template browser read from the repository."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlparse

from img2vid.comfy import NODE_CLASS_MAPPINGS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: ComfyUI's own nodes the example workflows use besides img2vid's.
CORE_NODES = {"LoadImage", "SaveAnimatedWEBP"}


def test_tool_comfy_names_a_publisher_a_display_name_and_an_icon_in_the_repository():
    comfy = PYPROJECT["tool"]["comfy"]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", comfy["PublisherId"])  # the registry's id form
    assert comfy["DisplayName"].strip()
    icon = urlparse(comfy["Icon"])
    assert icon.scheme == "https"
    assert comfy["Icon"].startswith(PYPROJECT["project"]["urls"]["Repository"])  # served from the repository
    svg = ElementTree.parse(ROOT / Path(icon.path).name).getroot()  # the file the URL serves is here
    assert svg.tag.endswith("svg")
    _, _, width, height = (float(v) for v in svg.attrib["viewBox"].split())
    assert width == height  # the registry shows icons square


def test_project_metadata_the_registry_publishes():
    project = PYPROJECT["project"]
    assert project["name"] and project["version"] and project["description"] and project["license"]
    assert project["requires-python"] == ">=3.10"
    assert any(d.startswith("tomli") and "python_version < '3.11'" in d for d in project["dependencies"])


def test_example_workflows_sit_where_comfyui_and_the_registry_look_for_them():
    workflows = sorted((ROOT / "example_workflows").glob("*.json"))
    used = set()
    for path in workflows:
        workflow = json.loads(path.read_text())
        types = {node["type"] for node in workflow["nodes"]}
        assert types <= CORE_NODES | set(NODE_CLASS_MAPPINGS), path.name
        used |= types & set(NODE_CLASS_MAPPINGS)
    assert used == set(NODE_CLASS_MAPPINGS)  # each node has an example
    readme = (ROOT / "README.md").read_text()
    for path in workflows:
        assert f"example_workflows/{path.name}" in readme
