"""``RemoteEngine``: the image-to-video protocol (PROTOCOL.md) over httpx, as an img2vid engine.

It is the only remote client in img2vid: the CLI, the ComfyUI nodes and library users all reach
Stability's service or an img2vid server through it. ``generate`` reads top to bottom: fit and encode the
image, submit once, poll until done, read the result; a user's stop after the submit also cancels the job
on an img2vid server (:meth:`RemoteEngine.cancel_job`). The decisions (retry, wait, give up) live in
``_policy``, the one wait in ``_wait``, sending in ``_http``, the polling loop in ``_polling``, the error
wording in ``_errors``, the result forms in ``_result``, and the checks of the constructor's arguments (the
server, its key, the numbers, the headers) in ``_options``.

It must never send a second submit once the first may have reached the server (each is a paid job on the
hosted service; an img2vid server also gets an ``Idempotency-Key``, so even a retried submit makes one
job), never hand over a filtered result, and never let the API key reach a log record, an exception, a
repr or a progress text.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import uuid
from typing import Any, Literal

import httpx
import numpy as np
from PIL import Image

from ... import errors
from ...config import is_stability_url, mask_url_password
from ...fitting import PROTOCOL_SIZES, FixedSizes
from ...redact import MASK, install_log_filter, redact
from ...request import DEFAULT_CFG_SCALE, DEFAULT_MOTION_BUCKET_ID, TEXT_FIELDS, VideoRequest
from ...video import Video
from ..base import CancelCheck, Engine, ProgressCallback, raise_if_cancelled
from . import _wait
from ._errors import error_from_response
from ._http import Sender, tls_context
from ._options import (
    checked_poll_interval,
    checked_retry_policy,
    model_name,
    positive,
    request_headers,
    server_and_key,
)
from ._policy import RetryPolicy, first_poll_wait
from ._polling import poll_until_done
from ._result import video_from_response
from ._wait import CancelWatch, Clock, Deadline, Waiter

__all__ = ["RemoteEngine", "ROUTES", "DEFAULT_TIMEOUT", "CANCEL_TIMEOUT", "default_poll_interval"]

log = logging.getLogger("img2vid.remote")

ApiVersion = Literal["v2beta", "v2alpha"]

#: Route generation -> (submit path, result path with ``{id}``).
ROUTES: dict[str, tuple[str, str]] = {
    "v2beta": ("/v2beta/image-to-video", "/v2beta/image-to-video/result/{id}"),
    "v2alpha": ("/v2alpha/generation/image-to-video", "/v2alpha/generation/image-to-video/result/{id}"),
}

#: Total time one generation may take, submit to result, unless the caller says otherwise.
DEFAULT_TIMEOUT = 600.0
#: Stability asked clients to poll no more than once every 10 seconds; an img2vid server is happy with 1.
STABILITY_POLL_INTERVAL = 10.0
SERVER_POLL_INTERVAL = 1.0
#: How long ``cancel_job`` may take, retries included.
CANCEL_TIMEOUT = 10.0
#: How long the cancel sent after a user's stop may take: one attempt, so the stop is not held up.
STOP_CANCEL_TIMEOUT = 3.0
#: The header that makes a retried submit return the first job instead of starting a second one.
IDEMPOTENCY_HEADER = "Idempotency-Key"

_JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def default_poll_interval(base_url: str) -> float:
    return STABILITY_POLL_INTERVAL if is_stability_url(base_url) else SERVER_POLL_INTERVAL


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class RemoteEngine(Engine):
    """A client of Stability's image-to-video protocol: the hosted service or any img2vid server.

    The URL and key come from the arguments, then ``$IMG2VID_BASE_URL`` / ``$IMG2VID_API_KEY`` (and
    ``$STABILITY_API_KEY`` for Stability's URL), then ``base_url`` / ``api_key`` in the config file.
    ``timeout`` bounds a whole generation; ``poll_interval`` is the pause between polls when the server
    gives no ``Retry-After`` (default 10 s for Stability, 1 s elsewhere); ``max_retries`` bounds the
    retries of each request (default: ``retry_policy``'s, 2 unless a policy says otherwise). ``transport``
    replaces httpx's network transport (tests, proxies); ``clock`` is where the engine reads the time and
    waits (tests pass a fake one; default :data:`~._wait.SYSTEM_CLOCK`).
    """

    size_rule: FixedSizes = PROTOCOL_SIZES

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        poll_interval: float | None = None,
        max_retries: int | None = None,
        client_id: str | None = None,
        user_id: str | None = None,
        version: str | None = None,
        api_version: ApiVersion = "v2beta",
        transport: httpx.BaseTransport | None = None,
        retry_policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        model: str | None = None,
    ) -> None:
        install_log_filter()
        self._clock: Clock = clock if clock is not None else _wait.SYSTEM_CLOCK
        self.base_url, self._api_key = server_and_key(base_url, api_key)
        self.timeout = positive("timeout", timeout, "a number of seconds above 0")
        self.poll_interval = checked_poll_interval(poll_interval, default_poll_interval(self.base_url))
        self.retry_policy = checked_retry_policy(retry_policy, max_retries)
        if api_version not in ROUTES:
            raise errors.InvalidInputError.for_field("api_version", api_version, "v2beta or v2alpha")
        self.api_version: ApiVersion = api_version
        #: The server's model to ask for (the ``model`` form field); None: the server's default model.
        self.model = model_name(model, self.is_stability)
        self._headers = request_headers(self._api_key, client_id=client_id, user_id=user_id, version=version)
        self._transport = transport
        try:
            self._connect()
        except (httpx.InvalidURL, ValueError):
            raise errors.InvalidInputError.for_field(
                "base_url", mask_url_password(self.base_url), "an http:// or https:// URL"
            ) from None  # httpx's text repeats the URL, password and all

    def _connect(self) -> None:
        """A new connection pool, and the sender that uses it."""
        self._client = httpx.Client(
            base_url=self.base_url, headers=self._headers, transport=self._transport, verify=tls_context()
        )
        self._sender = Sender(self._client, self.retry_policy, self.base_url)

    def _reopen_if_closed(self) -> None:
        """A closed engine connects anew on its next use, as the Engine lifecycle promises."""
        if self._client.is_closed:
            self._connect()

    # ------------------------------------------------------------------ plumbing

    @property
    def is_stability(self) -> bool:
        """Whether this engine talks to Stability's hosted service (which gets only documented fields)."""
        return is_stability_url(self.base_url)

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def __repr__(self) -> str:
        key = "None" if self._api_key is None else repr(MASK)
        return f"RemoteEngine(base_url={redact(self.base_url)!r}, api_key={key}, api_version={self.api_version!r})"

    def __getstate__(self) -> Any:
        raise TypeError("a RemoteEngine holds an open connection and an API key; build a new one instead")

    def close(self) -> None:
        """Close the pooled connections (the next use opens new ones)."""
        self._client.close()

    def form_fields(self, request: VideoRequest) -> dict[str, str]:
        """The form fields sent with the image: to Stability's service the protocol's three; to an img2vid
        server the seed and every other field the caller set, the prompts, and ``model`` when one was named."""
        fields = {"seed": _number(request.seed)}
        # Stability's service is SVD alone: it always gets both, at SVD's defaults when unset. An img2vid
        # server gets only what the caller set, so its model's own defaults apply (and a Wan model is not
        # sent SVD's motion bucket).
        for name, default in (("cfg_scale", DEFAULT_CFG_SCALE), ("motion_bucket_id", DEFAULT_MOTION_BUCKET_ID)):
            value = getattr(request, name)
            if value is not None or self.is_stability:
                fields[name] = _number(value if value is not None else default)
        if self.model is not None:
            fields["model"] = self.model
        texts = {name: getattr(request, name) for name in TEXT_FIELDS if getattr(request, name) is not None}
        if self.is_stability and texts:
            name = next(iter(texts))
            raise errors.InvalidInputError(
                f"{name}: Stability's image-to-video service runs Stable Video Diffusion, which takes no text prompt",
                field=name,
                value=texts[name],
                allowed="no prompt for Stability's service",
            )
        if not self.is_stability:
            fields.update({name: _number(value) for name, value in request.engine_options().items()})
            fields.update(texts)
        return fields

    # ------------------------------------------------------------------ the job

    def generate(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> Video:
        """Submit the request once, poll until the video is ready, and return it.

        A stop after the submit (``cancel`` saying so, or Ctrl-C) also asks an img2vid server to cancel
        the job, best effort, before :class:`~img2vid.errors.CancelledError` (or the ``KeyboardInterrupt``)
        goes on to the caller.
        """
        raise_if_cancelled(cancel)
        self._reopen_if_closed()
        job: dict[str, str] = {}
        stop = CancelWatch(cancel)
        deadline = Deadline(self.timeout, lambda: self._deadline_message(job.get("id")), self._clock)
        waiter = Waiter(self._clock, deadline, stop)

        def tell(fraction: float | None, text: str) -> None:
            if progress is not None:
                progress(fraction, redact(text))

        # 1. Fit the image to the protocol's sizes and encode it as PNG.
        image = request.fitted_image(self.size_rule)
        height, width = image.shape[:2]
        png = _png(image)
        upload = f"{width}x{height} image ({len(png) // 1024} KiB)"

        # 2. Submit, exactly once unless the request surely never arrived.
        fields = self.form_fields(request)
        job["id"] = job_id = self._submit(png, upload, fields, waiter, tell, ticks=progress is not None)

        # 3. Poll until the result is ready; a stop from here on also cancels the job on the server.
        try:
            result = self._poll(job_id, waiter, tell)
        except errors.CancelledError:
            if stop.seen:  # the user's stop, not the server saying the job was cancelled
                self._cancel_after_stop(job_id)
            raise
        except KeyboardInterrupt:
            self._cancel_after_stop(job_id)
            raise

        # 4. Read the video, in whichever form the server sent it.
        video = video_from_response(result, fallback_seed=request.seed or None)
        log.info(
            "job %s done in %.1f s: %d frames at %g fps", job_id, deadline.elapsed(), video.num_frames, video.fps
        )
        tell(1.0, f"done in {deadline.elapsed():.0f} s")
        return video

    def _submit(
        self, png: bytes, upload: str, fields: dict[str, str], waiter: Waiter, tell: ProgressCallback, *, ticks: bool
    ) -> str:
        """The job id. Every retry carries the same idempotency key, so an img2vid server that did take
        an earlier attempt returns that job's id instead of starting a second job."""
        headers = {"accept": "application/json"}
        if not self.is_stability:
            headers[IDEMPOTENCY_HEADER] = uuid.uuid4().hex
        uploading = f"uploading {upload}"
        tell(None, uploading)

        def build(timeout: httpx.Timeout) -> httpx.Request:
            return self._client.build_request(
                "POST",
                ROUTES[self.api_version][0],
                data=fields,
                files={"image": ("image.png", png, "image/png")},
                headers=headers,
                timeout=timeout,
            )

        answer = self._sender.send(
            build,
            idempotent=False,
            waiter=waiter,
            what="submit the job",
            on_wait=lambda delay, text: tell(None, text),
            on_tick=(lambda: tell(None, f"{uploading}, {waiter.deadline.elapsed():.0f} s")) if ticks else None,
        )
        if answer.status_code != 200:
            raise error_from_response(answer, base_url=self.base_url, stage="submit", has_key=self.has_api_key)
        job_id = self._job_id(answer)
        log.info("job %s submitted to %s", job_id, redact(self.base_url))
        return job_id

    def _poll(self, job_id: str, waiter: Waiter, tell: ProgressCallback) -> httpx.Response:
        """The answer that carries the result; any other end is an error."""
        path = ROUTES[self.api_version][1].format(id=job_id)

        def fetch() -> httpx.Response:
            return self._sender.send(
                lambda timeout: self._client.build_request("GET", path, timeout=timeout),
                idempotent=True,
                waiter=waiter,
                what=f"fetch the result of job {job_id}",
                on_wait=lambda delay, text: tell(None, text),
            )

        tell(None, "submitted; waiting for the server")
        return poll_until_done(
            fetch,
            interval=self.poll_interval,
            waiter=waiter,
            progress=tell,
            on_error=lambda response: error_from_response(
                response, base_url=self.base_url, stage="poll", job_id=job_id, has_key=self.has_api_key
            ),
            first_wait=first_poll_wait(
                is_stability=self.is_stability, interval=self.poll_interval, remaining=waiter.deadline.remaining()
            ),
        )

    # ------------------------------------------------------------------ cancel

    def cancel_job(self, job_id: str, *, timeout: float = CANCEL_TIMEOUT) -> None:
        """Ask the server to cancel job ``job_id`` (``DELETE`` on its result route, an img2vid extension).

        Returns once the server answered 200. Raises :class:`~img2vid.errors.NotFoundError` (unknown,
        expired or another key's job), :class:`~img2vid.errors.ConflictError` (it already finished),
        :class:`~img2vid.errors.ConnectionFailedError`, :class:`~img2vid.errors.ServiceError` (405: the
        server offers no cancel), and :class:`~img2vid.errors.InvalidInputError` for Stability's service,
        which has no such route.
        """
        self._cancel(job_id, timeout=timeout, policy=self.retry_policy)
        log.info("job %s cancelled on %s", job_id, redact(self.base_url))

    def _cancel(self, job_id: str, *, timeout: float, policy: RetryPolicy) -> None:
        if self.is_stability:
            raise errors.InvalidInputError(
                f"{redact(self.base_url)} offers no way to cancel a job; cancelling works against an img2vid "
                "server",
                field="base_url",
            )
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise errors.InvalidInputError.for_field(
                "id", job_id, "a job id as the server returned it (1 to 128 letters, digits, '.', '_' or '-')"
            )
        path = ROUTES[self.api_version][1].format(id=job_id)
        self._reopen_if_closed()
        deadline = Deadline(
            timeout, lambda: f"{redact(self.base_url)} did not answer the cancel of job {job_id} in time", self._clock
        )
        sender = Sender(self._client, policy, self.base_url)
        answer = sender.send(
            lambda limits: self._client.build_request(
                "DELETE", path, headers={"accept": "application/json"}, timeout=limits
            ),
            idempotent=True,
            waiter=Waiter(self._clock, deadline, None),
            what=f"cancel job {job_id}",
        )
        if answer.status_code != 200:
            raise error_from_response(
                answer, base_url=self.base_url, stage="cancel", job_id=job_id, has_key=self.has_api_key
            )

    def _cancel_after_stop(self, job_id: str) -> None:
        """The user stopped waiting: tell the server, so the job stops using a GPU. Best effort: a server
        without the route (404, 405), a job that just finished (409), no connection: all are let go."""
        if self.is_stability:
            log.info("stopped waiting for job %s; the service may still finish it", job_id)
            return
        try:
            one_try = dataclasses.replace(self.retry_policy, max_retries=0)
            self._cancel(job_id, timeout=STOP_CANCEL_TIMEOUT, policy=one_try)
        except errors.Img2VidError as exc:
            log.info("stopped waiting for job %s; the server did not cancel it (%s)", job_id, exc.message)
        else:
            log.info("stopped waiting for job %s; the server cancelled it", job_id)

    def _job_id(self, answer: httpx.Response) -> str:
        """The id in a 200 answer to the submit; anything else is an error, never a reason to submit again."""
        try:
            payload = json.loads(answer.content)
        except (ValueError, UnicodeDecodeError):
            payload = None
        job_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise errors.ServiceError(
                "the server accepted the job but its answer has no readable job id; not submitting again, "
                "because the server may already have started (and charged for) the job",
                status=answer.status_code,
            )
        return job_id

    def _deadline_message(self, job_id: str | None) -> str:
        if job_id is None:
            return f"no answer from {redact(self.base_url)} within the {self.timeout:g} s allowed"
        return (
            f"job {job_id} did not finish within the {self.timeout:g} s allowed; it may still finish on the "
            "server (results are kept for 24 hours): allow more time with a longer timeout"
        )

