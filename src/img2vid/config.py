"""Where settings come from: argument, then environment, then the config file.

One resolution order for every front door, so the CLI, the ComfyUI nodes and library users find the
same server and key. Keys are read here and handed to an engine; nothing in this module logs or prints
them, and the error for a missing key names every place a key can come from without showing any value.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .redact import mask_url_credentials

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (ComfyUI's portable builds among others): the same parser, published as tomli
    import tomli as tomllib  # pyright: ignore[reportMissingImports]  (installed on 3.10 only, by the marker in pyproject)

__all__ = [
    "STABILITY_BASE_URL",
    "ENV_BASE_URL",
    "ENV_API_KEY",
    "ENV_STABILITY_API_KEY",
    "ENV_CONFIG",
    "config_path",
    "load_config",
    "is_stability_url",
    "mask_url_password",
    "resolve_base_url",
    "resolve_api_key",
    "key_places",
    "missing_key_message",
]

STABILITY_BASE_URL = "https://api.stability.ai"
ENV_BASE_URL = "IMG2VID_BASE_URL"
ENV_API_KEY = "IMG2VID_API_KEY"
ENV_STABILITY_API_KEY = "STABILITY_API_KEY"
ENV_CONFIG = "IMG2VID_CONFIG"


def config_path() -> Path:
    """``$IMG2VID_CONFIG``, else ``$XDG_CONFIG_HOME/img2vid/config.toml`` (``~/.config`` by default)."""
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "img2vid" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file as a dict; an absent file is an empty config, a broken one a clear error."""
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"config file {path} cannot be read: {exc}", field="config") from exc


def mask_url_password(text: str) -> str:
    """``text`` with every URL's password shown as ``********``: the one rule of :mod:`img2vid.redact`."""
    return mask_url_credentials(text)


def is_stability_url(base_url: str) -> bool:
    """Whether ``base_url`` is Stability's hosted service."""
    netloc = base_url.split("://", 1)[-1].split("/", 1)[0]
    host = netloc.rsplit("@", 1)[-1].split(":", 1)[0].lower()  # past any user:password@
    return host == "api.stability.ai" or host.endswith(".stability.ai")


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def resolve_base_url(explicit: str | None = None, config: dict[str, Any] | None = None) -> str:
    """The server to talk to: argument, ``$IMG2VID_BASE_URL``, config ``base_url``, else Stability's."""
    config = load_config() if config is None else config
    for candidate in (explicit, os.environ.get(ENV_BASE_URL), config.get("base_url")):
        cleaned = _clean(candidate if isinstance(candidate, str) else None)
        if cleaned:
            if cleaned.lower() == "stability":
                return STABILITY_BASE_URL
            if not cleaned.startswith(("http://", "https://")):
                raise InvalidInputError.for_field("base_url", mask_url_password(cleaned), "an http:// or https:// URL")
            return cleaned.rstrip("/")
    return STABILITY_BASE_URL


def resolve_api_key(
    explicit: str | None = None, base_url: str | None = None, config: dict[str, Any] | None = None
) -> str | None:
    """The key: argument, ``$IMG2VID_API_KEY``, ``$STABILITY_API_KEY`` (Stability's URL only), config ``api_key``."""
    config = load_config() if config is None else config
    candidates: list[str | None] = [explicit, os.environ.get(ENV_API_KEY)]
    if base_url is None or is_stability_url(base_url):
        candidates.append(os.environ.get(ENV_STABILITY_API_KEY))
    value = config.get("api_key")
    candidates.append(value if isinstance(value, str) else None)
    for candidate in candidates:
        cleaned = _clean(candidate)
        if cleaned:
            return cleaned
    return None


def key_places(base_url: str) -> str:
    """Where a key for ``base_url`` can be set, in words (never a value)."""
    places = [f"${ENV_API_KEY}"]
    if is_stability_url(base_url):
        places.append(f"${ENV_STABILITY_API_KEY}")
    places.append(f"api_key in {config_path()}")
    return "pass one, or set " + ", ".join(places[:-1]) + " or " + places[-1]


def missing_key_message(base_url: str) -> str:
    """The error text for a server that needs a key when none was found."""
    return f"no API key for {base_url}: {key_places(base_url)}"
