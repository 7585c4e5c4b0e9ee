"""A real OpenSearch for the SIEM path's tests and demos: the 2.19.6 integration-test distribution, a zip on
Maven Central (``org.opensearch.distribution.integ-test-zip:opensearch``), run under the machine's Java 17.

The zip is fetched once into the cache and unpacked there. OpenSearch refuses to run as root: under root it
runs as ``nobody`` (``setpriv``), with its files under ``/var/cache/migwatch``, which that user can reach
(root's home is closed to it). One node on 127.0.0.1, a small heap, security off (the integ-test zip has no
security plugin), disk watermarks off (a nearly full test disk must not make the index read-only).

    deploy/local/opensearch start [--port 9200]   # fetch once, unpack, start, wait for a yellow cluster
    deploy/local/opensearch status | stop | fetch
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migwatch_dev.local_services import LocalService, LocalServiceError, cache_root

OPENSEARCH_VERSION = "2.19.6"
DEFAULT_PORT = 9200
DEFAULT_HEAP = "512m"
READY_TIMEOUT_S = 180.0
RUN_AS = "nobody"  # when started by root


def default_root() -> Path:
    """Where the distribution and the node's data live: the user's cache, or one ``nobody`` reaches."""
    return Path("/var/cache/migwatch") if os.geteuid() == 0 else cache_root()


@dataclass(frozen=True)
class LocalOpenSearch(LocalService):
    """One local OpenSearch node: its distribution, data, log and pid."""

    NAME, TITLE, LOG, MAIN_CLASS = "opensearch", "OpenSearch", "opensearch.out", b"org.opensearch.bootstrap.OpenSearch"

    port: int = DEFAULT_PORT
    version: str = OPENSEARCH_VERSION
    root: Path = field(default_factory=default_root)
    heap: str = DEFAULT_HEAP

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.root / f"opensearch-{self.version}" / f"opensearch-{self.version}"

    def fetch(self) -> float:
        """Download and unpack the zip once; returns the seconds it took (0 when the cache had it)."""
        complete = self.home.parent / ".complete"
        if complete.exists():
            return 0.0
        started = time.monotonic()
        work = self.home.parent
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"fetching OpenSearch {self.version} (integ-test zip) from Maven Central into {work} ...", flush=True)
        artifact = f"org.opensearch.distribution.integ-test-zip:opensearch:{self.version}:zip"
        self.maven(["org.apache.maven.plugins:maven-dependency-plugin:3.7.1:copy", f"-Dartifact={artifact}",
               f"-DoutputDirectory={work}"], artifact, cwd=work)  # fmt: skip
        archive = work / f"opensearch-{self.version}.zip"
        if not archive.exists():
            raise LocalServiceError(f"Maven reported {artifact} fetched, but {archive} is not there")
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(work)
        archive.unlink()
        for script in (self.home / "bin").iterdir():
            script.chmod(0o755)  # zipfile drops the mode bits
        complete.touch()
        return time.monotonic() - started

    def start(self, *, fresh: bool = False, timeout: float = READY_TIMEOUT_S) -> tuple[int, float]:
        """Start the node unless it runs; wait until the cluster is yellow. Returns (pid, seconds until ready).
        ``fresh`` wipes the data of an earlier run first."""
        running = self.running(timeout)
        if running is not None:
            return running, 0.0
        self.fetch()
        data, logs = self.run_dir / "data", self.run_dir / "logs"
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
        for folder in (data, logs, self.run_dir / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        command = [str(self.home / "bin" / "opensearch"), *self._settings(data, logs)]
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            for folder in (data, logs, self.run_dir / "tmp", self.home / "config", self.home / "logs"):
                _chown_tree(folder, user.pw_uid, user.pw_gid)
            command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *command]
        java = shutil.which("java")
        assert java is not None  # fetch() required it
        environment = {
            **os.environ,
            "JAVA_HOME": str(Path(java).resolve().parents[1]),
            "OPENSEARCH_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}",
            "OPENSEARCH_TMPDIR": str(self.run_dir / "tmp"),
        }
        # setpriv and the launcher script exec: the pid is the JVM's.
        return self.launch(command, timeout, env=environment, cwd=self.run_dir)

    @property
    def transport_port(self) -> int:
        return self.port + 100

    def ports(self) -> tuple[int, ...]:
        return (self.port, self.transport_port)

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """The answer of ``_search`` on ``index`` (refreshed first: what was indexed is searchable)."""
        urllib.request.urlopen(f"{self.url}/{index}/_refresh", data=b"", timeout=30).close()
        request = urllib.request.Request(
            f"{self.url}/{index}/_search", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.load(response))

    def count(self, index: str) -> int:
        """Documents in ``index`` (refreshed first); -1 while the index or the node is not there."""
        try:
            urllib.request.urlopen(f"{self.url}/{index}/_refresh", data=b"", timeout=30).close()
            with urllib.request.urlopen(f"{self.url}/{index}/_count", timeout=30) as response:
                return int(json.load(response)["count"])
        except OSError:
            return -1

    def _settings(self, data: Path, logs: Path) -> list[str]:
        settings = {
            "cluster.name": "migwatch-local",
            "node.name": "local",
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "path.data": data,
            "path.logs": logs,
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            # Index names are created by the shipper's template, never by a typo.
            "action.auto_create_index": "true",
        }
        return [f"-E{name}={value}" for name, value in settings.items()]

    def ready(self) -> bool:
        """True when the cluster health is yellow or green."""
        try:
            with urllib.request.urlopen(f"{self.url}/_cluster/health", timeout=5) as response:
                return json.load(response).get("status") in {"yellow", "green"}
        except (OSError, urllib.error.URLError, ValueError):
            return False


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    for path in (folder, *folder.rglob("*")):
        os.chown(path, uid, gid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/opensearch", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "fetch"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port; transport uses port+100")
    parser.add_argument("--heap", default=DEFAULT_HEAP, help="JVM heap (-Xms/-Xmx)")
    parser.add_argument("--fresh", action="store_true", help="start: wipe the data of an earlier run")
    args = parser.parse_args(argv)
    node = LocalOpenSearch(port=args.port, heap=args.heap)
    try:
        if args.action == "fetch":
            seconds = node.fetch()
            print(f"OpenSearch {node.version} in {node.home}" + (f" (fetched in {seconds:.1f} s)" if seconds
                                                                  else " (cached)"))  # fmt: skip
        elif args.action == "start":
            fetch_s = node.fetch()
            pid, start_s = node.start(fresh=args.fresh)
            timing = f"fetched in {fetch_s:.1f} s, " if fetch_s else ""
            timing += f"ready in {start_s:.1f} s" if start_s else "already running"
            print(f"OpenSearch {node.version} on {node.url} (pid {pid}; {timing})\n  log: {node.log_file}")
        elif args.action == "stop":
            print("stopped" if node.stop() else f"not running (port {node.port})")
        else:
            pid = node.pid()
            if pid is None:
                print(f"not running (port {node.port})")
                return 3
            print(f"running: pid {pid}, {node.url}, {'ready' if node.ready() else 'not answering'}, "
                  f"log {node.log_file}")  # fmt: skip
    except LocalServiceError as error:
        print(f"local opensearch: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
