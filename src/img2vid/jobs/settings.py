"""The server's settings: one pydantic-settings object, read from arguments and ``IMG2VID_*`` variables.

Every knob an operator may turn lives here with its default, so the CLI, the app and the tests agree.
This module must never hold an API key (keys live hashed in the store), and never show the database URL,
which may carry a password.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import InvalidInputError, ServiceError, StoreUnavailableError
from ..families import SVD
from .served import ServedModel, parse_served

if TYPE_CHECKING:
    from .store import JobStore

__all__ = ["ServerSettings", "load_settings", "default_data_dir", "MAX_UPLOAD_BYTES", "CAP_SETTINGS"]

#: The protocol's request size limit: larger uploads get 413.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: The request field each cost cap bounds -> the setting (and so the ``IMG2VID_*`` variable) holding the cap.
CAP_SETTINGS: dict[str, str] = {"frames": "max_frames", "steps": "max_steps", "decode_chunk_size": "max_decode_chunk"}


def default_data_dir() -> Path:
    """The per-user data folder (``~/.local/share/img2vid`` on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("img2vid", appauthor=False))


class ServerSettings(BaseSettings):
    """How the server runs. ``IMG2VID_DATA``, ``IMG2VID_RESULT_TTL`` and so on override the defaults."""

    model_config = SettingsConfigDict(env_prefix="IMG2VID_", extra="ignore", populate_by_name=True)

    #: Folder holding the SQLite job store (``jobs.sqlite3``).
    data: Path = Field(default_factory=default_data_dir)
    #: A SQLAlchemy URL for the store; default ``sqlite:///<data>/jobs.sqlite3``. A PostgreSQL URL works too.
    #: It may hold the database's password, so it is left out of the settings' repr.
    database_url: str | None = Field(default=None, repr=False)
    #: Local model for the embedded workers (``tiny`` for offline smoke runs), as ``NAME=SOURCE`` or
    #: ``SOURCE``; None: the engine's default (SVD-XT). ``models`` serves several side by side.
    model: str | None = None
    #: Served models, ``NAME=SOURCE`` each (``--model`` repeated); the first is the default. Empty: ``model``.
    models: list[str] = Field(default_factory=list)
    #: Device and dtype for the local engine; None: chosen automatically.
    device: str | None = None
    dtype: str | None = None
    #: CPU threads for the local engine on a CPU-only machine; None: every core but one.
    engine_threads: int | None = Field(default=None, ge=1)
    #: ``module:callable`` returning an Engine, used instead of the local engine (tests, custom engines).
    engine_factory: str | None = None
    #: Worker threads, each running one job at a time on its own warm engine.
    workers: int = Field(default=1, ge=0, le=64)
    #: Where jobs run: ``embedded`` (worker threads in this process) or ``celery`` (``img2vid worker``
    #: processes fed through ``broker_url``; this process then loads no model).
    dispatch: Literal["embedded", "celery"] = "embedded"
    #: The Celery broker for ``dispatch=celery`` (``redis://host:6379/0``). May hold a password: not in the repr.
    broker_url: str | None = Field(default=None, repr=False)
    #: Seconds a claimed job stays its worker's without a heartbeat; the worker renews it while it lives.
    lease_seconds: float = Field(default=30.0, gt=0)
    #: The local engine's speed mode (``eager``, ``compiled``, ``fp8``, ``fast``); None: the engine's default.
    speed: str | None = None
    #: The local engine's memory mode (``auto``, ``low``); None: the engine's default.
    memory: str | None = None
    #: Jobs one key may have queued or running at once; one more is 429 ``too_many_jobs``.
    max_queued_per_key: int = Field(default=10, ge=1)
    #: Jobs the whole server may have queued or running; one more is 503 ``queue_full``.
    max_queued: int = Field(default=1000, ge=1)
    #: The largest ``frames``, ``steps`` and ``decode_chunk_size`` a request may ask for (cost caps).
    max_frames: int = Field(default=50, ge=1)
    max_steps: int = Field(default=100, ge=1)
    max_decode_chunk: int = Field(default=25, ge=1)
    #: Seconds of engine time a job may take before it is stopped and failed.
    job_timeout: float = Field(default=900.0, gt=0)
    #: Seconds a finished job's result is kept before it is removed.
    result_ttl: float = Field(default=24 * 3600.0, gt=0)
    #: Seconds between sweeps that remove expired results.
    sweep_interval: float = Field(default=60.0, gt=0)
    #: Require an API key (created with ``img2vid keys create``). Off only for a private machine.
    auth: bool = True
    #: Accept input sizes other than the protocol's three (the engine then fits them to its own rule).
    any_size: bool = False
    #: Upper bound on an input's pixel count when ``any_size`` is on (checked before decoding).
    max_pixels: int = Field(default=2048 * 2048, gt=0)
    #: The request body limit in bytes (the protocol's 10 MiB).
    max_upload_bytes: int = Field(default=MAX_UPLOAD_BYTES, gt=0)
    #: Requests per key allowed in ``rate_window`` seconds on the protocol routes; 0 turns the limit off.
    rate_limit: int = Field(default=150, ge=0)
    rate_window: float = Field(default=10.0, gt=0)
    #: ``Retry-After`` on a 202 when no better estimate is known, and its ceiling.
    retry_after: int = Field(default=2, ge=1)
    retry_after_max: int = Field(default=10, ge=1)
    #: Seconds a valid key stays cached; a revoked key stops working within this time.
    key_cache_seconds: float = Field(default=5.0, ge=0)
    #: Seconds an unknown key is remembered as unknown, so a flood of one wrong key does not reach the store.
    unknown_key_cache_seconds: float = Field(default=5.0, ge=0)
    #: Wrong keys one client address may send in ``auth_failure_window`` seconds; past that its requests
    #: are 429 with ``Retry-After`` without a store lookup. 0 turns this limit off.
    auth_failure_limit: int = Field(default=20, ge=0)
    auth_failure_window: float = Field(default=10.0, gt=0)
    #: Seconds a job's status may be answered from memory (jobs run by other processes look this stale).
    status_cache_seconds: float = Field(default=0.25, ge=0)

    _served: list[ServedModel] | None = PrivateAttr(default=None)

    def served_models(self) -> list[ServedModel]:
        """The models this deployment serves, by name (read once: names and families, no weights)."""
        if self._served is None:
            specs = list(self.models) or ([self.model] if self.model else [])
            self._served = parse_served(specs, default_source=SVD.hub_repo, custom_engine=bool(self.engine_factory))
        return self._served

    def require_broker(self, who: str) -> str:
        """The broker URL, or the one error that says ``who`` (a worker, a Celery front end) needs it."""
        if not self.broker_url:
            raise InvalidInputError(
                f"broker_url (IMG2VID_BROKER_URL) is required for {who}: the Celery broker the front ends publish "
                "to, e.g. redis://host:6379/0",
                field="broker_url",
                allowed="a Celery broker URL (redis://host:6379/0)",
            )
        return self.broker_url

    def cost_caps(self) -> dict[str, int]:
        """The request field each cost cap bounds -> the largest value this server accepts for it."""
        return {field: int(getattr(self, setting)) for field, setting in CAP_SETTINGS.items()}

    def store_url(self) -> str:
        """The store's SQLAlchemy URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data / 'jobs.sqlite3').resolve()}"

    def open_store(self) -> JobStore:
        """The job store at :meth:`store_url`, creating the data folder first when the store is the default file.

        A URL that cannot be used is an :class:`InvalidInputError` naming ``database_url``, and a database
        that does not answer a :class:`ServiceError`; neither message repeats the URL, which may hold a password.
        """
        from sqlalchemy.exc import ArgumentError, DBAPIError

        from .store import JobStore

        if not self.database_url:
            self.data.mkdir(parents=True, exist_ok=True)
        try:
            return JobStore(self.store_url())
        except (ArgumentError, ImportError) as error:
            raise InvalidInputError(
                f"database_url (IMG2VID_DATABASE_URL) cannot be used: {_first_line(error)}",
                field="database_url",
                allowed="a SQLAlchemy URL whose driver is installed (postgresql+psycopg://user:password@host/db)",
            ) from None
        except (DBAPIError, StoreUnavailableError) as error:
            cause = error.__cause__ if isinstance(error, StoreUnavailableError) else error
            detail = getattr(cause, "orig", None) or cause or error
            raise ServiceError(f"cannot open the job store: {_first_line(detail)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_settings(**given: Any) -> ServerSettings:
    """Settings from the given values (``None`` means "not given") over ``IMG2VID_*`` variables.

    A bad value, typed as an option or set in the environment, is an :class:`InvalidInputError` naming
    the setting, its variable and what is allowed, not pydantic's report.
    """
    try:
        return ServerSettings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as error:
        problem = error.errors()[0]
        name = str(problem["loc"][0]) if problem.get("loc") else "settings"
        text = str(problem.get("msg", "invalid"))
        allowed = text.removeprefix("Input should be ")
        shown = problem.get("input")
        rule = f"must be {allowed}" if allowed != text else f"is not valid: {text}"
        raise InvalidInputError(
            f"{name} (IMG2VID_{name.upper()}) {rule}; got {shown!r}",
            field=name,
            value=shown,
            allowed=allowed,
        ) from None
