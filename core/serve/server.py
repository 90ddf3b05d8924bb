"""The uvicorn server of ``mtbranch serve``: h11 with a request-head deadline, and the graceful drain.

SIGTERM/SIGINT: readiness 503 at once, the listener closed after ``drain_delay_s``, requests in flight answered
within ``grace_s``, then 503 JSON for any left; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

from fastapi import FastAPI

from mtbranch.serve.schema import ServeSettings
from mtbranch.serve.state import ServerState, shutdown_error

log = logging.getLogger("mtbranch.serve")


def h11_with_read_timeout(read_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request head (slow or idle clients are disconnected).

    uvicorn itself only times out idle keep-alive connections *after* a response; a client that connects and
    trickles its headers would hold the connection forever.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ReadTimeoutH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()  # no request head within the deadline

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # a whole head arrived; the body has its own deadline (Guard)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the next request's head

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return ReadTimeoutH11


def make_server(app: FastAPI, host: str, port: int, *, log_level: str = "info",
                settings: ServeSettings | None = None) -> Any:
    """A uvicorn server whose SIGTERM/SIGINT drain the app (see :class:`GracefulServer`)."""
    import uvicorn

    settings = settings or ServeSettings()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            http=h11_with_read_timeout(settings.read_timeout_s),
                            timeout_keep_alive=max(1, math.ceil(settings.keep_alive_s)),
                            timeout_graceful_shutdown=math.ceil(settings.grace_s + 5))
    return _graceful_server_class()(config, app.state.mtbranch, settings)


def _graceful_server_class() -> type[Any]:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """SIGTERM/SIGINT: readiness 503 at once; after ``drain_delay_s`` the listener closes (uvicorn's shutdown);
        requests in flight are answered; after ``grace_s`` the rest get 503 JSON. A second signal forces the exit.
        The process then exits normally (status 0), without re-raising the signal."""

        def __init__(self, config: Any, state: ServerState, settings: ServeSettings) -> None:
            super().__init__(config)
            self.state = state
            self.settings = settings
            self.drain_started: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.drain_started is not None:
                self.force_exit = self.should_exit = True
                return
            self.drain_started = time.monotonic()
            self.state.draining = True
            self.state.set_ready(self.state.ready)
            log.info("signal %d: draining (readiness 503; listener closes in %g s, grace %g s)", sig,
                     self.settings.drain_delay_s, self.settings.grace_s)

        async def on_tick(self, counter: int) -> bool:
            if (self.drain_started is not None and not self.should_exit
                    and time.monotonic() - self.drain_started >= self.settings.drain_delay_s):
                self.state.closing = True
                self.should_exit = True
                asyncio.get_running_loop().create_task(self._expire())
            return bool(await super().on_tick(counter))

        async def _expire(self) -> None:
            await asyncio.sleep(self.settings.grace_s)
            b = self.state.batcher
            n = b.abort(shutdown_error()) if b is not None else 0
            if n:
                self.state.metrics.rejected.labels("shutdown").inc(n)
                log.warning("grace of %g s over: %d request(s) answered 503", self.settings.grace_s, n)

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return GracefulServer


def run_server(app: FastAPI, host: str, port: int, *, log_level: str = "info",
               settings: ServeSettings | None = None) -> None:
    """Blocking uvicorn run (used by the CLI); returns after a graceful drain."""
    make_server(app, host, port, log_level=log_level, settings=settings).run()
    log.info("stopped")
