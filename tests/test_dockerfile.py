"""deploy/Dockerfile, checked instruction by instruction (no Docker engine or hadolint here): multi-stage,
pinned slim base, non-root numeric user, NET_RAW as a file capability only, every COPY source present."""

from __future__ import annotations

import re
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
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


def test_multi_stage_on_a_pinned_slim_base() -> None:
    built = stages()
    assert len(built) >= 2
    bases = [stage[0][1].split()[0] for stage in built]
    assert all(":" in base and not base.endswith(":latest") and "slim" in base for base in bases), bases
    assert re.fullmatch(r"\S+ AS build", built[0][0][1])
    assert any(k == "COPY" and rest.startswith("--from=build") for k, rest in built[-1])


def test_the_image_runs_as_a_non_root_user_with_only_net_raw() -> None:
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])  # numeric: runAsNonRoot can check it
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert "setcap cap_net_raw+ep" in runs and "cap_sys_admin" not in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs and "--no-install-recommends" in runs
    assert [rest for keyword, rest in final if keyword == "ENTRYPOINT"] == ['["migwatch"]']


def test_every_copied_source_is_in_the_repository() -> None:
    for stage in stages():
        for keyword, rest in stage:
            if keyword == "COPY" and not rest.startswith("--from"):
                *sources, _ = rest.split()
                for source in sources:
                    assert (ROOT / source).exists(), source
    assert not any(keyword == "ADD" for keyword, _ in instructions())  # COPY only: no remote fetches
