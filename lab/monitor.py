"""QMP through qemu.qmp, driven from a private event-loop thread.

Every command, reply and event goes to a JSON-lines log with a timestamp, and every
event is kept (QEMUMachine's rule: never drop an event), so the flow can ask later
"was there a SHUTDOWN, and why?" even if it was not waiting at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from qemu.qmp import QMPClient

from .errors import GuestError

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, socket_path: Path, log_path: Path, name: str) -> None:
        self.socket_path, self.log_path, self.name = socket_path, log_path, name
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._listener: asyncio.Task[None] | None = None
        self._logf = open(log_path, "a", encoding="utf-8")
        # Called with each event as it arrives, on the monitor's own thread (keep it short).
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    def _record(self, kind: str, payload: Any) -> None:
        with self._lock:
            self._logf.write(json.dumps({"t": time.time(), "vm": self.name, kind: payload}) + "\n")
            self._logf.flush()

    def _submit(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connect(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # QEMU creates it as it starts; connecting earlier only logs errors
        while True:
            try:
                self._submit(self._client.connect(str(self.socket_path)), timeout)
                break
            except Exception as e:  # the socket may not exist yet while QEMU starts
                if time.monotonic() > deadline:
                    raise GuestError(f"QMP socket {self.socket_path} did not answer: {e}") from e
                time.sleep(0.05)
        self._submit(self._start_listener(), timeout)

    async def _start_listener(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def _stop_listener(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        async for event in self._client.events:
            with self._lock:
                self.events.append(dict(event))
            self._record("event", dict(event))
            if self.on_event is not None:
                try:
                    self.on_event(dict(event))
                except Exception:  # a hook's failure must not end the listener
                    log.exception("%s: event hook failed on %s", self.name, event.get("event"))

    def cmd(self, name: str, timeout: float = 60.0, **args: Any) -> Any:  # noqa: D417
        self._record("command", {"execute": name, "arguments": args})
        try:
            reply = self._submit(self._client.execute(name, args or None), timeout)
        except Exception as e:
            self._record("error", {"execute": name, "error": str(e)})
            raise GuestError(f"QMP {name} failed on {self.name}: {e}") from e
        self._record("return", {"execute": name, "return": reply})
        return reply

    def hmp(self, command: str) -> str:
        """A human-monitor command (e.g. `log cpu_reset,int`), logged like any other."""
        args: dict[str, Any] = {"command-line": command}
        return str(self.cmd("human-monitor-command", 60.0, **args))

    def events_named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events_named(name)
            if found:
                return found[-1]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        try:
            self._submit(self._client.disconnect(), 5)
        except Exception as e:  # QEMU may already be gone; nothing left to say to it
            log.debug("QMP disconnect on %s: %s", self.name, e)
        self._submit(self._stop_listener(), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._logf.close()
