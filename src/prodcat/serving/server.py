"""Running the API under uvicorn (``prodcat serve``)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os

from prodcat.serving.config import SETTINGS_ENV, ServingSettings
from prodcat.serving.service import ModelService

log = logging.getLogger("prodcat.serving")

_M_MMAP_THRESHOLD = -3


def return_memory_after_bursts(threshold: int = 1024 * 1024) -> bool:
    """Make glibc serve allocations above ``threshold`` bytes with their own mappings.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so after a
    few decoded photos their buffers come from the heap arenas, which a process seldom gives back:
    a burst of photos left the server hundreds of MB larger for good. A fixed threshold keeps
    photo buffers mapped on their own and unmapped when freed. False where glibc is not there.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def _http_protocol_base() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        return HttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol
        return H11Protocol


def header_timeout_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection that has not sent a request's headers
    :attr:`ServingSettings.header_timeout` seconds after it opened or after its previous
    response: a client dripping its headers a byte at a time would otherwise hold the
    connection (uvicorn's keep-alive timer stops at the first byte)."""
    global _HeaderTimeoutProtocol
    if _HeaderTimeoutProtocol is not None:
        return _HeaderTimeoutProtocol
    base = _http_protocol_base()

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        #: Seconds; None: from the settings in the environment (worker processes), else 10.
        timeout: float | None = None
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(_header_seconds(), self._header_timeout, self.cycle)

        def _header_timeout(self, cycle_then) -> None:
            # A new request cycle means its headers arrived in time.
            if self.cycle is cycle_then and not self.transport.is_closing():
                client = "{}:{}".format(*self.client) if self.client else "a client"
                log.info("closed the connection of %s: no request headers within %g s",
                         client, _header_seconds())
                self.transport.close()

    _HeaderTimeoutProtocol = HeaderTimeoutProtocol
    return HeaderTimeoutProtocol


_HeaderTimeoutProtocol: type[asyncio.Protocol] | None = None
_HEADER_TIMEOUT: list[float] = []


def _header_seconds() -> float:
    if not _HEADER_TIMEOUT:
        try:
            _HEADER_TIMEOUT.append(ServingSettings.from_env().header_timeout)
        except Exception:  # no settings in the environment: the default
            _HEADER_TIMEOUT.append(ServingSettings.__dataclass_fields__["header_timeout"].default)
    return _HEADER_TIMEOUT[0]


def _uvicorn_http(settings: ServingSettings) -> str:
    """The ``http`` option naming :func:`header_timeout_protocol`'s class by import path, as
    uvicorn's worker processes need it."""
    _HEADER_TIMEOUT[:] = [settings.header_timeout]
    return "prodcat.serving.server:HeaderTimeoutProtocol"


def __getattr__(name: str):
    # uvicorn imports the protocol class by name; it is built on first use (imports uvicorn).
    if name == "HeaderTimeoutProtocol":
        return header_timeout_protocol()
    raise AttributeError(name)


def run_server(settings: ServingSettings, *, host: str = "127.0.0.1", port: int = 8000,
               workers: int = 1, log_level: str = "info", access_log: bool = False,
               service: ModelService | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop accepting, finish open requests (up to 10 s) and
    unload the model.

    One worker by default: the model is loaded once and concurrent requests are micro-batched,
    which serves more than extra processes would on a small machine (each worker holds its own
    copy of the model). ``workers`` > 1 starts that many processes, each loading the bundle.
    """
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return_memory_after_bursts()
    common = {"host": host, "port": port, "log_level": log_level, "access_log": access_log,
              "timeout_graceful_shutdown": 10, "server_header": False,
              # Slow clients must not hold connections forever.
              "timeout_keep_alive": 5,
              "http": _uvicorn_http(settings)}
    if workers <= 1:
        from prodcat.serving.app import create_app

        uvicorn.run(create_app(settings, service=service), **common)
        return
    # Worker processes import the app by name; they read the settings from the environment.
    os.environ[SETTINGS_ENV] = settings.to_env()
    uvicorn.run("prodcat.serving.app:app_from_env", factory=True, workers=workers, **common)
