"""deploy/Dockerfile, checked instruction by instruction (no Docker engine or hadolint here): multi-stage,
pinned slim base, non-root numeric user, NET_RAW as a file capability only, every COPY source present; and its
build stage's wheel, made from exactly the files it copies, installed and run in a fresh venv."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if not result and keyword == "ARG":  # a build argument before the first FROM (the base image)
            continue
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


def test_multi_stage_on_a_pinned_slim_base() -> None:
    built = stages()
    assert len(built) >= 2
    [default] = [rest for keyword, rest in instructions()[:1] if keyword == "ARG"]  # the base, before any FROM
    name, _, base = default.partition("=")
    assert name == "BASE_IMAGE" and ":" in base and not base.endswith(":latest") and "slim" in base, default
    bases = [stage[0][1].split()[0] for stage in built]
    assert all(stage == "${BASE_IMAGE}" for stage in bases), bases
    assert re.fullmatch(r"\S+ AS build", built[0][0][1])
    assert any(k == "COPY" and rest.startswith("--from=build") for k, rest in built[-1])


def test_the_image_runs_as_a_non_root_user_and_no_file_gets_a_capability() -> None:
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])  # numeric: runAsNonRoot can check it
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    # A file capability on the interpreter makes every container that drops ALL unable to exec it (issue #16).
    assert "setcap" not in runs and "cap_" not in runs
    assert [rest for keyword, rest in final if keyword == "ENTRYPOINT"] == ['["migwatch"]']


def test_every_copied_source_is_in_the_repository() -> None:
    for stage in stages():
        for keyword, rest in stage:
            if keyword == "COPY" and not rest.startswith("--from"):
                *sources, _ = rest.split()
                for source in sources:
                    assert (ROOT / source).exists(), source
    assert not any(keyword == "ADD" for keyword, _ in instructions())  # COPY only: no remote fetches


def build_context(folder: Path) -> Path:
    """What the build stage's COPY instructions put in its WORKDIR, copied from the repository into ``folder``."""
    build = stages()[0]
    workdir = folder / next(rest for keyword, rest in build if keyword == "WORKDIR").lstrip("/")
    workdir.mkdir(parents=True)
    for keyword, rest in build:
        if keyword != "COPY":
            continue
        *sources, destination = rest.split()
        target = workdir / destination
        for source in sources:
            origin = ROOT / source
            place = target / origin.name if destination.endswith("/") or len(sources) > 1 else target
            if origin.is_dir():
                shutil.copytree(origin, place, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, place)
    return workdir


def test_the_build_stage_makes_a_wheel_that_installs_and_runs(tmp_path: Path) -> None:
    """The image's wheel, from exactly the files the Dockerfile copies, in a fresh venv (its dependencies from
    the package index): the command and every verb answer --help, every module imports, no lab inside."""
    source = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
                            str(source)], timeout=300, capture_output=True, text=True, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = wheels.glob("migwatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert not [name for name in names if "migwatch_dev" in name or "/lab/" in name or "qemu" in name], names
    assert "migwatch/streams/page.html" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, command = venv / "bin" / "python", venv / "bin" / "migwatch"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600,
                   capture_output=True)  # fmt: skip
    shown = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    verbs = re.findall(r"^    (\w+) ", shown, re.MULTILINE)
    assert verbs == ["probe", "worker", "watch", "record", "replay", "eval", "publish", "plot", "config", "targets",
                     "silences", "alerts"]  # fmt: skip
    for verb in verbs:
        result = subprocess.run([str(command), verb, "--help"], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0 and result.stdout.startswith(f"usage: migwatch {verb}"), result.stderr
    imported = subprocess.run(
        [str(python), "-c", "import importlib, pkgutil, migwatch\n"
         "names = [m.name for m in pkgutil.walk_packages(migwatch.__path__, 'migwatch.')]\n"
         "print(len([importlib.import_module(name) for name in names]), migwatch.__file__)"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    count, location = imported.stdout.split()
    assert int(count) >= 40 and location.startswith(str(venv))
