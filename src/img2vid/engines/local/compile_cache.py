"""The on-disk compile cache: torch's compile artefacts saved per model shape, torch version and device.

A cold ``torch.compile`` of SVD-XT takes minutes; with the artefacts of an earlier start loaded first
(``torch.compiler.load_cache_artifacts``: inductor's FX graph cache and AOTAutograd's cache entries), a
later start only re-traces and reaches its first clip in seconds. Artefacts live in one folder per key, a
hash of what makes compiled code reusable: torch's version, the device (GPU name and compute capability),
the model's architecture (UNet and VAE configs), the dtype and whether FP8 is on. A start loads every
file in its key's folder; a run that compiled something new adds one file. The folder is
``$IMG2VID_COMPILE_CACHE``, else ``<user cache>/img2vid/compile``. A damaged file is skipped with a
warning: the cache can only make a start faster, never make it fail. Nothing here compiles or runs a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CompileCache", "default_cache_folder", "cache_key", "ENV_COMPILE_CACHE"]

log = logging.getLogger("img2vid.engines.local")

ENV_COMPILE_CACHE = "IMG2VID_COMPILE_CACHE"


def default_cache_folder() -> Path:
    """``$IMG2VID_COMPILE_CACHE``, else the per-user cache folder's ``img2vid/compile``."""
    configured = os.environ.get(ENV_COMPILE_CACHE, "").strip()
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("img2vid")) / "compile"


def device_label(device: torch.device) -> str:
    """The hardware compiled code is specific to: the GPU's name and capability, or the CPU's kind."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} sm{major}{minor}"
    # Compiled CPU kernels use the vector instructions of the CPU they were built on (AVX2, AVX512...).
    return f"{device.type} {platform.machine()} {torch.backends.cpu.get_cpu_capability()}"


def cache_key(parts: Any, device: torch.device, dtype: torch.dtype, *, fp8: bool) -> tuple[str, dict[str, Any]]:
    """A short hash naming the cache folder, and the facts it hashes (written beside the artefacts)."""
    facts = {
        "torch": torch.__version__,
        "device": device_label(device),
        "dtype": str(dtype).removeprefix("torch."),
        "fp8": fp8,
        "unet": _plain(dict(parts.unet.config)),
        "vae": _plain(dict(parts.vae.config)),
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return digest, facts


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """A model config without the bookkeeping keys diffusers adds (names, versions, paths)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


class CompileCache:
    """One key's folder of compile artefacts: :meth:`load` before compiling, :meth:`save` after."""

    def __init__(self, folder: Path, key: str, facts: dict[str, Any]) -> None:
        self.folder = Path(folder) / key
        self.key = key
        self.facts = facts
        self._saved_digests: set[str] = set()
        #: Artefact files the last :meth:`load` read into torch's caches.
        self.loaded_files = 0

    def __repr__(self) -> str:
        return f"CompileCache({str(self.folder)!r})"

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.bin")) if self.folder.is_dir() else []

    def load(self) -> int:
        """Load every artefact file of this key into torch's caches; the number of files loaded."""
        loaded = 0
        for path in self.files():
            try:
                data = path.read_bytes()
                # torch answers None (and logs why) for bytes it cannot read, rather than raising.
                if torch.compiler.load_cache_artifacts(data) is None:
                    raise ValueError("not torch compile artefacts, or damaged")
            except Exception as error:  # noqa: BLE001 - a bad cache file must never stop a start
                log.warning("compile cache: skipping %s (%s: %s)", path, type(error).__name__, error)
                continue
            self._saved_digests.add(hashlib.sha256(data).hexdigest())
            loaded += 1
        if loaded:
            log.info("compile cache: loaded %d artefact file(s) from %s", loaded, self.folder)
        self.loaded_files = loaded
        return loaded

    def save(self) -> Path | None:
        """Write what this process compiled so far, unless an identical file is already there."""
        try:
            result = torch.compiler.save_cache_artifacts()
        except Exception as error:  # noqa: BLE001 - saving is an optimisation; a failure is only logged
            log.warning("compile cache: could not collect artefacts (%s: %s)", type(error).__name__, error)
            return None
        if result is None or not result[0]:
            return None
        data = result[0]
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._saved_digests:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "key.json").write_text(json.dumps(self.facts, indent=2, sort_keys=True, default=str))
            target = self.folder / f"{digest[:16]}.bin"
            # Written under a temporary name and renamed, so a concurrent start never reads half a file.
            with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".part", delete=False) as handle:
                handle.write(data)
            os.replace(handle.name, target)
        except OSError as error:
            log.warning("compile cache: could not write to %s (%s)", self.folder, error)
            return None
        self._saved_digests.add(digest)
        log.info("compile cache: saved %.1f MiB of artefacts to %s", len(data) / 2**20, target)
        return target
