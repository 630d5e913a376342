"""A scripted fake of Stability's image-to-video protocol: a real HTTP server on 127.0.0.1.

Tests script what the server answers, one answer per request, and read back every request it received, so
they can assert what a client sent (``exactly one submit``, the form fields, the headers, the
``Idempotency-Key`` of each submit) and how it behaved (retries, polling intervals, a cancel). It speaks
both route generations, and img2vid's cancel route (``DELETE`` on the result route). It never checks a
key: tests script a 401 when they want one.

    server = FakeProtocolServer().start()
    server.submit(error(500), submitted("abc"))        # first submit fails, the retry gets an id
    server.poll(accepted(), accepted(progress=0.5), video_raw(mp4))
    ...                                                  # point a client at server.url
    assert len(server.submits) == 2

When a queue runs dry the server falls back to ``submit_default`` (an id), ``poll_default`` (a 500 that
says the script ran out) and ``cancel_default`` (``None``: the contract's 200 for the id asked about), so a
test that forgets an answer fails loudly instead of hanging. Set ``poll_default = accepted()`` for a job
that never ends.

Time: ``clock`` (real by default) stamps each request and takes each answer's ``delay``; give it the
engine's fake clock (tests/support/clock.py) and a ``delay`` costs no real time. ``held()`` answers only
once the test calls ``release()`` (or the server stops): a request in flight for as long as a test needs.

Use the ``fake_protocol_server`` fixture (tests/conftest.py) to get a started server that stops itself.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

__all__ = [
    "Answer",
    "RecordedRequest",
    "FakeProtocolServer",
    "JOB_ID",
    "ROUTES",
    "submitted",
    "accepted",
    "video_raw",
    "video_json",
    "error",
    "drop",
    "truncated",
    "StabilityRedirect",
    "tiny_mp4",
    "cancelled",
    "held",
]

#: The id ``submitted()`` answers with by default: 64 hex characters, like the hosted service's.
JOB_ID = "a1b2c3d4" * 8

#: Route generation -> (submit path, poll path prefix); a cancel is ``DELETE`` on the poll path.
ROUTES: dict[str, tuple[str, str]] = {
    "v2beta": ("/v2beta/image-to-video", "/v2beta/image-to-video/result/"),
    "v2alpha": ("/v2alpha/generation/image-to-video", "/v2alpha/generation/image-to-video/result/"),
}


@dataclass
class Answer:
    """One scripted answer.

    ``action`` is ``"respond"`` (send status, headers, body), ``"drop"`` (close the connection without
    a word), ``"truncate"`` (send the status and headers promising the whole body, then half the body,
    then close) or ``"hold"`` (respond only once the test calls ``release()``). ``delay`` is how long the
    server takes to answer, on the server's clock, for clients that must give up or be cancelled.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    action: str = "respond"
    delay: float = 0.0


@dataclass
class RecordedRequest:
    """What the server received: enough to assert on everything a client sends."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    kind: str  # "submit", "poll", "cancel" or "other"
    generation: str | None  # "v2beta", "v2alpha" or None
    job_id: str | None = None
    form: dict[str, str] = field(default_factory=dict)  # text fields of a multipart submit
    files: dict[str, tuple[str | None, str, bytes]] = field(default_factory=dict)  # name -> (filename, type, data)
    time: float = 0.0  # the server's clock when the request arrived


# ---------------------------------------------------------------------- answer makers


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    merged = {"content-type": "application/json"}
    merged.update(headers or {})
    return Answer(status=status, headers=merged, body=json.dumps(payload).encode())


def submitted(job_id: str = JOB_ID, **headers: str) -> Answer:
    """200 on submit: ``{"id": job_id}``."""
    return _json(200, {"id": job_id}, headers)


def accepted(
    *, job_id: str = JOB_ID, progress: float | None = None, retry_after: str | float | None = None
) -> Answer:
    """202 on poll: still running; optionally a progress fraction and a ``Retry-After``."""
    payload: dict[str, Any] = {"id": job_id, "status": "in-progress"}
    if progress is not None:
        payload["progress"] = progress
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return _json(202, payload, headers)


def video_raw(
    data: bytes, *, finish_reason: str | None = "SUCCESS", seed: int | None = None, content_type: str = "video/mp4"
) -> Answer:
    """200 on poll, the raw form: the MP4 bytes, ``finish-reason`` and ``seed`` headers."""
    headers = {"content-type": content_type}
    if finish_reason is not None:
        headers["finish-reason"] = finish_reason
    if seed is not None:
        headers["seed"] = str(seed)
    return Answer(status=200, headers=headers, body=data)


def video_json(
    data: bytes | None, *, finish_reason: str = "SUCCESS", seed: int | None = None, camel_case: bool = False
) -> Answer:
    """200 on poll, the JSON form; ``camel_case`` spells ``finishReason`` the v2alpha way."""
    payload: dict[str, Any] = {}
    if data is not None:
        payload["video"] = base64.b64encode(data).decode()
    payload["finishReason" if camel_case else "finish_reason"] = finish_reason
    if seed is not None:
        payload["seed"] = seed
    return _json(200, payload)


def error(status: int, name: str | None = None, *messages: str, retry_after: str | float | None = None) -> Answer:
    """An error answer with the protocol's error body ``{"id", "name", "errors"}``."""
    payload = {
        "id": "e" * 32,
        "name": name or {400: "bad_request", 401: "unauthorized", 404: "not_found"}.get(status, "error"),
        "errors": list(messages) or [f"scripted {status}"],
    }
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return _json(status, payload, headers)


def cancelled(job_id: str = JOB_ID) -> Answer:
    """200 on cancel: ``{"id": job_id, "status": "cancelled"}``."""
    return _json(200, {"id": job_id, "status": "cancelled"})


def held(answer: Answer | None = None) -> Answer:
    """``answer`` (a 202 by default) sent only once the test calls ``server.release()``."""
    base = answer or accepted()
    return Answer(status=base.status, headers=dict(base.headers), body=base.body, action="hold")


def drop() -> Answer:
    """Close the connection without answering (a crash, a proxy cutting the line)."""
    return Answer(action="drop")


def truncated(answer: Answer) -> Answer:
    """``answer`` cut off halfway through its body."""
    return Answer(status=answer.status, headers=dict(answer.headers), body=answer.body, action="truncate")


# ---------------------------------------------------------------------- the server


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str | None, str, bytes]]]:
    form: dict[str, str] = {}
    files: dict[str, tuple[str | None, str, bytes]] = {}
    if not content_type.lower().startswith("multipart/form-data"):
        return form, files
    message = BytesParser(policy=HTTP).parsebytes(b"content-type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            form[str(name)] = payload.decode("utf-8", errors="replace")
        else:
            files[str(name)] = (filename, part.get_content_type(), payload)
    return form, files


class _QuietServer(ThreadingHTTPServer):
    """A client that hung up (it was cancelled, or timed out) is part of the script, not a failure."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _RealClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeProtocolServer:
    """The scripted server. Thread-safe: the client may run in another thread than the test."""

    def __init__(self, clock: Any = None) -> None:
        self._lock = threading.Condition()
        self._submit_answers: deque[Answer] = deque()
        self._poll_answers: deque[Answer] = deque()
        self._cancel_answers: deque[Answer] = deque()
        self.requests: list[RecordedRequest] = []
        self.submit_default: Answer = submitted()
        self.poll_default: Answer = error(500, "script_exhausted", "the fake server has no more scripted polls")
        self.cancel_default: Answer | None = None
        #: ``now()`` stamps each request; ``sleep(s)`` takes an answer's ``delay``.
        self.clock: Any = clock or _RealClock()
        self._released = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting

    def submit(self, *answers: Answer) -> FakeProtocolServer:
        """Queue answers for the next submits, in order."""
        with self._lock:
            self._submit_answers.extend(answers)
        return self

    def poll(self, *answers: Answer) -> FakeProtocolServer:
        """Queue answers for the next polls, in order."""
        with self._lock:
            self._poll_answers.extend(answers)
        return self

    def cancel(self, *answers: Answer) -> FakeProtocolServer:
        """Queue answers for the next cancels (``DELETE`` on a result route), in order."""
        with self._lock:
            self._cancel_answers.extend(answers)
        return self

    def release(self) -> None:
        """Let every held answer go, now and from now on."""
        self._released.set()

    # -- reading back

    @property
    def submits(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "submit"]

    @property
    def polls(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "poll"]

    @property
    def cancels(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "cancel"]

    @property
    def idempotency_keys(self) -> list[str | None]:
        """The ``Idempotency-Key`` header of each submit, in order (``None`` where there was none)."""
        return [r.headers.get("idempotency-key") for r in self.submits]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``count`` requests of ``kind`` ("submit", "poll", "cancel") arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(1 for r in self.requests if r.kind == kind) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        return int(self._httpd.server_address[1])

    # -- lifecycle

    def start(self) -> FakeProtocolServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
                pass  # keep test output clean

            def do_GET(self) -> None:  # noqa: N802 - stdlib's name
                server._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self)

            def do_DELETE(self) -> None:  # noqa: N802
                server._handle(self)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-protocol", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # a held answer must not keep a handler thread alive
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeProtocolServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handling

    def _classify(self, method: str, path: str) -> tuple[str, str | None, str | None]:
        for generation, (submit_path, poll_prefix) in ROUTES.items():
            if method == "POST" and path == submit_path:
                return "submit", generation, None
            if method in ("GET", "DELETE") and path.startswith(poll_prefix):
                job_id = path[len(poll_prefix) :]
                if re.fullmatch(r"[^/]+", job_id):
                    return ("poll" if method == "GET" else "cancel"), generation, job_id
        return "other", None, None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        kind, generation, job_id = self._classify(handler.command, path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        form, files = _parse_multipart(headers.get("content-type", ""), body) if kind == "submit" else ({}, {})
        record = RecordedRequest(
            method=handler.command,
            path=path,
            headers=headers,
            body=body,
            kind=kind,
            generation=generation,
            job_id=job_id,
            form=form,
            files=files,
            time=self.clock.now(),
        )
        with self._lock:
            self.requests.append(record)
            if kind == "submit":
                answer = self._submit_answers.popleft() if self._submit_answers else self.submit_default
            elif kind == "poll":
                answer = self._poll_answers.popleft() if self._poll_answers else self.poll_default
            elif kind == "cancel":
                if self._cancel_answers:
                    answer = self._cancel_answers.popleft()
                else:
                    answer = self.cancel_default or cancelled(job_id or "")
            else:
                answer = error(404, "not_found", f"no route {handler.command} {path}")
            self._lock.notify_all()
        self._send(handler, answer)

    def _send(self, handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.delay:
            self.clock.sleep(answer.delay)
        if answer.action == "hold":
            self._released.wait()
        if answer.action == "drop":
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(answer.body)))
        if answer.action == "truncate":
            handler.send_header("connection", "close")
        handler.end_headers()
        if answer.action == "truncate":
            handler.wfile.write(answer.body[: len(answer.body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        handler.wfile.write(answer.body)


class StabilityRedirect(httpx.HTTPTransport):
    """A transport that sends requests meant for ``https://api.stability.ai`` to the fake server instead.

    The client still believes it talks to Stability's URL (so it applies the hosted service's rules), but
    every byte goes over real HTTP to the local server.
    """

    def __init__(self, server: FakeProtocolServer) -> None:
        super().__init__()
        self._server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._server.port)
        return super().handle_request(request)



@functools.lru_cache(maxsize=8)
def tiny_mp4(num_frames: int = 3, width: int = 64, height: int = 48, fps: float = 6.0) -> bytes:
    """A small real H.264 MP4 whose frames differ, for answers that carry a video."""
    import numpy as np

    from img2vid.video import Video

    ramp = np.linspace(0, 255, num_frames, dtype=np.uint8)
    frames = np.broadcast_to(ramp[:, None, None, None], (num_frames, height, width, 3)).copy()
    return Video(frames=frames, fps=fps).to_bytes("mp4")
