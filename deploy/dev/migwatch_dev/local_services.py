"""What the local services (Kafka, OpenSearch) share: where their downloads are cached, whether a process or
a port is alive, a stop that waits, and a service's run folder, pid, readiness wait and stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

STOP_TIMEOUT_S = 30.0


class LocalServiceError(RuntimeError):
    """Something a local service could not do; the message says what and where to look."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migwatch"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (our own child that exited) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (a clean shutdown), SIGKILL when it hangs; returns once the process is gone."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)


@dataclass(frozen=True)
class LocalService:
    """A local service's process: its run folder (``<root>/run/<NAME>-<port>``) with the log and the pid, the
    pid while it is still this service's JVM, a wait until it answers, and a stop."""

    NAME: ClassVar[str]  # run folder and file names: "kafka", "opensearch"
    TITLE: ClassVar[str]  # in messages: "the broker", "OpenSearch"
    LOG: ClassVar[str]  # the log file's name in the run folder
    MAIN_CLASS: ClassVar[bytes]  # what the JVM's command line names
    ERROR: ClassVar[type[LocalServiceError]] = LocalServiceError  # what its failures raise

    port: int
    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run" / f"{self.NAME}-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.run_dir / self.LOG

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.NAME}.pid"

    def ready(self) -> bool:
        raise NotImplementedError

    def maven(self, command: list[str], what: str, cwd: Path | None = None) -> None:
        """Run a Maven command that fetches ``what`` from Maven Central; its last lines in the error when it fails."""
        for program, package in (
            ("mvn", "Maven (Debian package 'maven')"),
            ("java", "a Java runtime >= 17 (Debian package 'openjdk-17-jre-headless')"),
        ):
            if shutil.which(program) is None:
                raise self.ERROR(f"'{program}' was not found: install {package}")  # fmt: skip
        result = subprocess.run(["mvn", "-B", "-q", *command], capture_output=True, text=True, check=False, cwd=cwd)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise self.ERROR(f"Maven could not fetch {what}:\n{tail}")

    def ports(self) -> tuple[int, ...]:
        """The ports the service listens on, which must be free before it starts."""
        raise NotImplementedError

    def running(self, timeout: float) -> int | None:
        """The pid of the service when it runs already (once it answers); else None, its ports checked free."""
        pid = self.pid()
        if pid is not None:
            self.wait_ready(timeout, pid=pid)
            return pid
        for port in self.ports():
            if port_busy(port):
                raise self.ERROR(f"127.0.0.1:{port} is already in use by another program; pick --port")
        return None

    def launch(
        self,
        command: list[str],
        timeout: float,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wait: bool = True,
    ) -> tuple[int, float]:
        """Start ``command`` (which must exec the JVM) in its own session, its output to the log; wait until it
        answers, or stop it (unless not ``wait``: a node that answers only once its peers run). Returns (pid,
        seconds until ready)."""
        started = time.monotonic()
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True,  # outlives the command that started it; stopped by `stop`
            )  # fmt: skip
        self.pid_file.write_text(f"{process.pid}\n")
        if not wait:
            return process.pid, 0.0
        try:
            self.wait_ready(timeout, pid=process.pid)
        except LocalServiceError:
            self.stop()
            raise
        return process.pid, time.monotonic() - started

    def pid(self) -> int | None:
        """The service's pid when it runs, else None (a stale pid file, a recycled pid are ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        ours = self.MAIN_CLASS in cmdline and str(self.run_dir).encode() in cmdline
        return pid if ours and alive(pid) else None

    def wait_ready(self, timeout: float, *, pid: int) -> None:
        """Block until the service answers (``ready``); fail early when the process died."""
        deadline = time.monotonic() + timeout
        while True:
            if not alive(pid):
                raise self.ERROR(f"{self.TITLE} exited during start-up; last lines of {self.log_file}:\n{self.tail()}")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise self.ERROR(f"{self.TITLE} did not answer within {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.5)

    def stop(self) -> bool:
        """SIGTERM the service (a clean shutdown), SIGKILL it if it hangs. False when it was not running."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
