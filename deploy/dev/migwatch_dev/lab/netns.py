"""Running commands for the lab's network namespaces, which it creates and always deletes again."""

from __future__ import annotations

import subprocess

from migwatch_dev.lab.errors import LabError


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``command``; with ``check``, a failure is a LabError quoting the command and its stderr."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as error:
        raise LabError(f"{command[0]} is not installed (deploy/setup installs it)") from error
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result


def in_ns(namespace: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``command`` inside ``namespace``; the empty name is this process's own namespace."""
    prefix = ("ip", "netns", "exec", namespace) if namespace else ()
    return sh(*prefix, *command, check=check)
