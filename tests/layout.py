"""The packages of the repository, as the two pyproject files install them (the folders they come from)."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ROOT = ROOT / "deploy" / "dev"


def _packages(project: Path) -> dict[str, Path]:
    """Package name -> its folder, by the project's ``[tool.setuptools]`` packages and package-dir."""
    setuptools = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})
    return {name: project / folders.get(name, name.replace(".", "/")) for name in setuptools["packages"]}


PRODUCT = _packages(ROOT)
DEV = _packages(DEV_ROOT)


def modules(packages: dict[str, Path]) -> list[str]:
    """Every module of those packages, the packages themselves included."""
    return sorted(
        {
            info.name
            for package in packages
            for info in pkgutil.iter_modules(importlib.import_module(package).__path__, prefix=f"{package}.")
            if not info.ispkg
        }
        | set(packages)
    )


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Module name -> its source file in the repository, read from the folders (nothing imported)."""
    files = {}
    for package, folder in packages.items():
        files[package] = folder / "__init__.py"
        for path in sorted(folder.glob("*.py")):
            if path.name != "__init__.py":
                files[f"{package}.{path.stem}"] = path
    return files
