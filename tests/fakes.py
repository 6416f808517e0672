"""Real fakes: a UNIX socket that behaves like QEMU's serial chardev with a shell behind it."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path


class FakeSerialShell:
    """Listens on `path`; the first client talks to a real /bin/sh (stdin/stdout/stderr).

    `banner` is sent first, as a booting kernel would print before the shell.
    """

    def __init__(self, path: Path, banner: bytes = b"") -> None:
        self.path, self.banner = path, banner
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.proc: subprocess.Popen | None = None
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        self.conn = conn
        conn.sendall(self.banner)
        self.proc = subprocess.Popen(["/bin/sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._pump_out, daemon=True).start()
        while data := conn.recv(4096):
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _pump_out(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.conn is not None
        while data := self.proc.stdout.read1(4096):
            self.conn.sendall(data)
        try:
            self.conn.shutdown(socket.SHUT_RDWR)  # the shell exited: like QEMU going away
        except OSError:
            pass  # already closed by close()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.conn:
            self.conn.close()
        self.server.close()
