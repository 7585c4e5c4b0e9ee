"""The product's container image (deploy/Dockerfile), built and run here with Debian's podman.

No Docker engine and no image registry are reachable on these machines, so the Dockerfile's base comes from
a local image: Debian bookworm made with ``mmdebstrap`` (Debian's python3 is 3.11, as in ``python:3.11-slim``)
and imported into podman once, like Kafka's jars are fetched once. podman runs with the settings of
deploy/podman/containers.conf (runc, lower ulimits: the defaults fail here).

    deploy/local/image build      # the base once (30-40 s), then the image from deploy/Dockerfile
    deploy/local/image status     # the images there are, with their sizes
    deploy/local/image run -- ARGS  # podman with the project's containers.conf, e.g. run --rm IMAGE --help
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BASE_IMAGE = "localhost/debian-python:bookworm"
IMAGE = "localhost/migwatch:dev"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
INSTALL = "apt-get install podman buildah runc mmdebstrap"

# The base behaves as python:3.11-slim does for a Dockerfile: python at /usr/local/bin, pip allowed to install.
BASE_HOOK = (
    'for name in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$1/usr/local/bin/$name"; done; '
    'rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED; rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*'
)


class ImageError(RuntimeError):
    """The image could not be made or run; the message says what failed, with podman's last lines."""


def env() -> dict[str, str]:
    """The environment podman needs here: the project's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, capture: bool = True, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Runs podman with the project's settings; ImageError with its last output lines when it fails."""
    if shutil.which("podman") is None:
        raise ImageError(f"podman is not installed: {INSTALL}")
    try:
        done = subprocess.run(["podman", *args], check=False, env=env(), capture_output=capture, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        # Seen here: a podman killed while holding one of its locks leaves the next one waiting on it, silently.
        raise ImageError(
            f"podman {' '.join(args[:3])} ... did not finish within {timeout:.0f} s (a lock left by "
            f"a killed podman? `podman system renumber` frees them):\n{_last_lines(expired.stdout, expired.stderr)}"
        ) from expired
    if done.returncode != 0:
        raise ImageError(f"podman {' '.join(args[:3])} ... failed with exit {done.returncode}:\n"
                         f"{_last_lines(done.stdout, done.stderr)}")  # fmt: skip
    return done


def _last_lines(*outputs: str | bytes | None) -> str:
    """The last 15 lines podman printed. After a timeout they are bytes even with text=True: run() had no
    time to decode them."""
    text = "".join(out.decode(errors="replace") if isinstance(out, bytes) else out or "" for out in outputs)
    return "\n".join(text.strip().splitlines()[-15:])


def exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False, env=env()).returncode == 0


def build_base() -> float:
    """Makes the base image unless it is there; returns the seconds it took (0.0 when it was there)."""
    if exists(BASE_IMAGE):
        return 0.0
    if shutil.which("mmdebstrap") is None:
        raise ImageError(f"mmdebstrap is not installed: {INSTALL}")
    started = time.monotonic()
    print(f"making the base image {BASE_IMAGE} (mmdebstrap of Debian bookworm, once) ...", flush=True)
    strap = subprocess.Popen(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
         "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr", f"--customize-hook={BASE_HOOK}",
         "--format=tar", "bookworm", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    imported = subprocess.run(
        ["podman", "import", "-", BASE_IMAGE], check=False, env=env(), stdin=strap.stdout, capture_output=True
    )
    assert strap.stdout is not None and strap.stderr is not None
    strap.stdout.close()
    errors = strap.stderr.read().decode(errors="replace")
    if strap.wait() != 0 or imported.returncode != 0:
        raise ImageError(f"the base image could not be made:\n{errors[-2000:]}{imported.stderr.decode()[-2000:]}")
    return time.monotonic() - started


def build(tag: str = IMAGE) -> float:
    """Builds deploy/Dockerfile on the local base (pip reaches the index with the host's CA bundle, mounted
    for the build's RUN steps only); returns the seconds the image build took."""
    build_base()
    started = time.monotonic()
    args = ["build", "--quiet", "-f", str(DOCKERFILE), "-t", tag, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    if CA_BUNDLE.exists():
        args += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    podman(*args, str(ROOT), timeout=1800)
    return time.monotonic() - started


def size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/image", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    build_verb = verbs.add_parser("build", help="make the base image once, then build deploy/Dockerfile")
    build_verb.add_argument("--tag", default=IMAGE, help=f"the image's name (default {IMAGE})")
    verbs.add_parser("base", help=f"make the base image {BASE_IMAGE} unless it is there")
    verbs.add_parser("status", help="the base and the product image, with their sizes")
    run_verb = verbs.add_parser("run", help="podman with the project's containers.conf: run -- ARGS")
    run_verb.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    try:
        if options.verb == "build":
            took = build(options.tag)
            print(f"built {options.tag} in {took:.0f} s: {size_mb(options.tag):.0f} MB")
        elif options.verb == "base":
            took = build_base()
            print(f"{BASE_IMAGE}: " + (f"made in {took:.0f} s" if took else "already there"))
        elif options.verb == "status":
            present = [image for image in (BASE_IMAGE, IMAGE) if exists(image)]
            for image in (BASE_IMAGE, IMAGE):
                print(f"{image}: " + (f"{size_mb(image):.0f} MB" if image in present else "not built"))
            return 0 if len(present) == 2 else 3
        else:
            args = options.args[1:] if options.args[:1] == ["--"] else options.args
            return subprocess.run(["podman", *args], check=False, env=env()).returncode
    except ImageError as error:
        print(f"deploy/local/image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
