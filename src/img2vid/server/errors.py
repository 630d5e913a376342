"""The error tree as the protocol speaks it: ``{"id", "name", "errors"}`` with the error's HTTP status.

Every refusal the server makes goes through :func:`error_response`, so a client always reads one body
shape. An unexpected exception becomes a 500 whose body carries only an error id; the traceback goes to
the log under that id. A client that goes away before its request was read whole is not the server's
error: one INFO line, no traceback. A 405's ``Allow`` lists every method the path serves, across routes
(a result path serves GET and DELETE from two routes; the router alone would name only the first). This
module must never put a request's headers (and so an API key) into a body or a log line.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import Img2VidError, error_for_status

__all__ = ["error_body", "error_response", "install_error_handlers", "allowed_methods"]

log = logging.getLogger("img2vid.server")


def error_body(name: str, messages: list[str]) -> dict[str, object]:
    return {"id": secrets.token_hex(16), "name": name, "errors": messages}


def error_response(error: Img2VidError) -> JSONResponse:
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return JSONResponse(
        error_body(error.error_name, [error.message, *error.details]),
        status_code=error.http_status,
        headers=headers,
    )


def _http_error_name(status: int) -> str:
    if status == 405:
        return "method_not_allowed"
    return error_for_status(status).error_name


async def _on_img2vid_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Img2VidError)
    return error_response(exc)


def allowed_methods(routers: Iterable[APIRouter], path: str) -> list[str]:
    """Every method some route of ``routers`` serves at ``path``, sorted: what a 405's ``Allow`` must list.
    Read from img2vid's own routers, not the app's, whose layout FastAPI changes between versions."""
    found: set[str] = set()
    for router in routers:
        for route in router.routes:
            pattern, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
            if pattern is not None and methods and pattern.match(path):
                found.update(methods)
    return sorted(found)


def _http_error_handler(routers: tuple[APIRouter, ...]) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The handler of Starlette's HTTP errors, which knows ``routers`` for a 405's ``Allow``."""

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            detail = "not found"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            methods = allowed_methods(routers, request.scope.get("path", request.url.path))
            if methods:
                headers = {name: value for name, value in headers.items() if name.lower() != "allow"}
                headers["allow"] = ", ".join(methods)
        return JSONResponse(
            error_body(_http_error_name(exc.status_code), [detail]),
            status_code=exc.status_code,
            headers=headers or None,
        )

    return on_http_error


async def _on_client_disconnect(request: Request, _exc: Exception) -> Response:
    log.info(
        "%s %s: the client disconnected before its request was read whole; nothing was recorded",
        request.method,
        request.url.path,
    )
    return Response(status_code=400)  # never sent: nobody is left to read it


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    messages = []
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "header"))
        messages.append(f"{where}: {problem.get('msg', 'invalid')}" if where else str(problem.get("msg")))
    return JSONResponse(error_body("invalid_parameters", messages or ["invalid request"]), status_code=400)


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    body = error_body("internal_error", ["the server failed while answering; the error id is in its log"])
    log.error("internal error %s: %s", body["id"], type(exc).__name__, exc_info=exc)
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI, routers: Iterable[APIRouter] = ()) -> None:
    """Map every error to the protocol's body; ``routers`` are the app's own, for a 405's ``Allow``."""
    app.add_exception_handler(Img2VidError, _on_img2vid_error)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler(tuple(routers)))
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
