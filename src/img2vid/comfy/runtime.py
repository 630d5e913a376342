"""The one helper every img2vid node calls to run an engine inside ComfyUI.

It wires an engine's ``progress`` and ``cancel`` callbacks to ComfyUI: the node's progress bar
(``comfy.utils.ProgressBar``), a text line with the elapsed time while the engine can give no fraction
(``PromptServer.send_progress_text``), and ComfyUI's Cancel button (``comfy.model_management``'s interrupt
flag). It turns every failure into one line a ComfyUI user can act on, with any known API key blanked out:
each node registers every key the process could send with :mod:`img2vid.redact`'s one registry before it
runs (:func:`register_known_secrets`), so its messages, progress text and log records are masked there.

Everything ComfyUI provides is looked up when a node runs, never at import: the nodes import and work
without ComfyUI (each piece then quietly does nothing). This module must never poll, retry or fit images
(the engines do that), and must never put a key into a message, a log line or progress text.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..config import ENV_API_KEY, ENV_STABILITY_API_KEY, load_config
from ..engines.base import Engine
from ..redact import install_log_filter, redact, register_secret
from ..request import VideoRequest
from ..video import Video
from .host import model_management

__all__ = [
    "NodeError",
    "NodeRun",
    "generate_videos",
    "node_message",
    "node_errors",
    "interrupt_exception",
    "is_interrupt",
    "register_known_secrets",
    "PROGRESS_STEPS",
]

log = logging.getLogger("img2vid.comfy")

#: Progress bar units per video: fine enough for a smooth bar, coarse enough to send few updates.
PROGRESS_STEPS = 100

#: How often, at most, the elapsed-time text is refreshed while the engine gives no fraction.
TEXT_INTERVAL = 1.0


class NodeError(RuntimeError):
    """What an img2vid node raises: ComfyUI shows its one-line message in the error dialog."""

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        #: The img2vid error class name behind it (``AuthenticationError``), for scripts reading logs.
        self.kind = kind


# ---------------------------------------------------------------------- secrets and messages


def register_known_secrets(*explicit: str | None) -> None:
    """Register every API key this process could send with the one registry (:mod:`img2vid.redact`): the
    given ones (a widget's), the environment's and the config file's, whichever the engine will use, so no
    path can leak one. Also filters img2vid's loggers, so a key never reaches a log record either."""
    install_log_filter()
    found = [os.environ.get(ENV_API_KEY), os.environ.get(ENV_STABILITY_API_KEY), *explicit]
    try:
        value = load_config().get("api_key")
    except errors.Img2VidError:
        value = None  # a broken config file: reading it for the run reports it, in its own words
    if isinstance(value, str):
        found.append(value)
    for secret in found:
        register_secret(secret)


def node_message(error: BaseException) -> str:
    """One line for a ComfyUI user: what went wrong and, where img2vid knows, what to do."""
    if isinstance(error, errors.Img2VidError):
        text = error.message
        if error.details:
            text += " (" + "; ".join(error.details) + ")"
    else:
        text = f"unexpected {type(error).__name__}: {error} (see the ComfyUI console for details)"
    line = " ".join(str(text).split())  # one line: newlines and runs of spaces collapse
    return "img2vid: " + redact(line)


# ---------------------------------------------------------------------- ComfyUI lookups


def _interrupted() -> bool:
    mm = model_management()
    check = getattr(mm, "processing_interrupted", None)
    return bool(check()) if callable(check) else False


def interrupt_exception() -> BaseException:
    """The exception ComfyUI expects from a node the user stopped (it then shows no error dialog).

    ``throw_exception_if_processing_interrupted`` also clears ComfyUI's flag, as its own nodes do.
    """
    mm = model_management()
    throw = getattr(mm, "throw_exception_if_processing_interrupted", None)
    if callable(throw):
        try:
            throw()
        except BaseException as exc:  # noqa: BLE001 - it raises ComfyUI's InterruptProcessingException
            return exc
    cls = getattr(mm, "InterruptProcessingException", None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls()
    return NodeError("img2vid: cancelled", kind="CancelledError")


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is ComfyUI's interrupt (the user pressed Cancel)."""
    cls = getattr(model_management(), "InterruptProcessingException", None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _make_bar(total: int, node_id: str | None) -> Any | None:
    try:
        from comfy.utils import ProgressBar  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - no ComfyUI: no bar
        return None
    try:
        return ProgressBar(total, node_id=node_id) if node_id is not None else ProgressBar(total)
    except TypeError:  # an older ComfyUI whose bar takes no node id
        return ProgressBar(total)


def _executing_node_id() -> str | None:
    """The running node's id, from ComfyUI's execution context where this ComfyUI has one."""
    try:
        from comfy_execution.utils import get_executing_context  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        return None
    context = get_executing_context()
    node_id = getattr(context, "node_id", None)
    return str(node_id) if node_id is not None else None


def _text_sender(node_id: str | None) -> Callable[[str], None] | None:
    """``send_progress_text`` for this node, when running inside a ComfyUI server that has it."""
    if node_id is None or model_management() is None:  # only inside ComfyUI is ``server`` ComfyUI's
        return None
    try:
        from server import PromptServer  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        return None
    instance = getattr(PromptServer, "instance", None)
    send = getattr(instance, "send_progress_text", None)
    if not callable(send):
        return None

    def sender(text: str) -> None:
        try:
            send(text, node_id)
        except Exception:  # noqa: BLE001 - a closed websocket must not fail the job
            log.debug("img2vid: progress text not sent", exc_info=True)

    return sender


# ---------------------------------------------------------------------- the run


@dataclass
class NodeRun:
    """Progress, text and cancellation for one node execution of ``jobs`` videos."""

    jobs: int = 1
    node_id: str | None = None
    clock: Callable[[], float] = time.monotonic
    _bar: Any = field(default=None, init=False, repr=False)
    _send_text: Callable[[str], None] | None = field(default=None, init=False, repr=False)
    _job: int = field(default=0, init=False)
    _started: float = field(default=0.0, init=False)
    _last_text_at: float = field(default=float("-inf"), init=False)
    _fraction_known: bool = field(default=False, init=False)
    _stopped: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.node_id is None:
            self.node_id = _executing_node_id()
        self._bar = _make_bar(self.jobs * PROGRESS_STEPS, self.node_id)
        self._send_text = _text_sender(self.node_id)
        self._started = self.clock()

    # -- callbacks handed to the engine

    def cancel(self) -> bool:
        """True once the user pressed Cancel.

        Engines call this at least every second, so it also keeps the node's text alive: while the engine
        has said nothing for a second and gives no fraction, the text shows the time elapsed.
        """
        if self._stopped or _interrupted():
            self._stopped = True
            return True
        now = self.clock()
        if not self._fraction_known and now - self._last_text_at >= TEXT_INTERVAL:
            self._text(f"working · {now - self._started:.0f} s elapsed")
        return False

    def progress(self, fraction: float | None, text: str) -> None:
        if fraction is not None:
            self._fraction_known = True
            self._set_bar(max(0.0, min(1.0, float(fraction))))
        if text:
            self._text(text)

    # -- internals

    def _prefix(self) -> str:
        return f"video {self._job + 1}/{self.jobs}: " if self.jobs > 1 else ""

    def _text(self, text: str) -> None:
        self._last_text_at = self.clock()
        if self._send_text is not None:
            self._send_text(redact(self._prefix() + text))

    def _set_bar(self, fraction: float) -> None:
        if self._bar is None:
            return
        value = round((self._job + fraction) * PROGRESS_STEPS)
        try:
            self._bar.update_absolute(value, self.jobs * PROGRESS_STEPS)
        except Exception as exc:  # noqa: BLE001
            # ComfyUI's progress hook raises its interrupt exception once Cancel is pressed; the engine
            # must see that as a cancel (and stop cleanly), not as a failure inside its own loop.
            if is_interrupt(exc):
                self._stopped = True
            else:
                log.debug("img2vid: progress bar update failed", exc_info=True)

    def start_job(self, index: int) -> None:
        self._job = index
        self._fraction_known = False
        self._last_text_at = float("-inf")

    def finish_job(self) -> None:
        self._set_bar(1.0)

    # -- the one entry point

    def generate(self, engine: Engine, request: VideoRequest) -> Video:
        """Run one request through ``engine``; ComfyUI's interrupt, or a one-line :class:`NodeError`, on failure."""
        _log_fit(engine, request)
        try:
            video = engine.generate(request, progress=self.progress, cancel=self.cancel)
        except (Exception, KeyboardInterrupt) as exc:  # every failure leaves as ComfyUI expects it
            if is_interrupt(exc):
                raise
            if self._stopped or _interrupted() or isinstance(exc, (errors.CancelledError, KeyboardInterrupt)):
                raise interrupt_exception() from None
            message = node_message(exc)
            if self.jobs > 1:  # say which image of the batch failed
                message = message.replace("img2vid: ", "img2vid: " + self._prefix(), 1)
            # The cause is dropped on purpose: a library's exception text could carry a header or URL.
            raise NodeError(message, kind=type(exc).__name__) from None
        self.finish_job()
        return video


def _log_fit(engine: Engine, request: VideoRequest) -> None:
    """One log line when the engine will fit the image to another size (the engine does the fitting)."""
    rule = engine.size_rule
    width, height = request.size
    try:
        if rule.allows(width, height):
            return
        target = rule.target_for(width, height)
    except Exception:  # noqa: BLE001 - a report, never a failure
        return
    if request.fit.value == "strict":
        return  # the engine refuses it with a message that lists the allowed sizes
    log.info(
        "img2vid: input image %dx%d is fitted (%s) to %dx%d, the nearest size the engine accepts",
        width,
        height,
        request.fit.value,
        target[0],
        target[1],
    )


def generate_videos(engine: Engine, requests: Sequence[VideoRequest], *, node_id: str | None = None) -> list[Video]:
    """One video per request, in order, on one progress bar."""
    run = NodeRun(jobs=len(requests), node_id=node_id)
    videos = []
    for index, request in enumerate(requests):
        run.start_job(index)
        videos.append(run.generate(engine, request))
    return videos


@contextmanager
def node_errors() -> Iterator[None]:
    """Failures before any engine runs (checking inputs, choosing the engine) as one-line node errors."""
    try:
        yield
    except errors.Img2VidError as exc:
        raise NodeError(node_message(exc), kind=type(exc).__name__) from None
    except ImportError as exc:
        missing = exc.name or "a package it needs"
        raise NodeError(
            f"img2vid: {missing} is not installed in ComfyUI's Python; the local engine needs "
            "pip install diffusers transformers safetensors accelerate (see README: ComfyUI)",
            kind="ImportError",
        ) from None
