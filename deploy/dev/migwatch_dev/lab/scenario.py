"""Scenarios: scripted episodes with ground truth, played on a lab, written as a labels file.

A scenario is a JSON object ``{"v": 1, "steps": [...]}``, with ``"vms": N`` for a fleet of N VMs (QEMU lab;
default 1; their ids are :func:`~migwatch_dev.lab.targets.fleet_ids`); each step names what to do (``"do"``)
and that episode's settings, which are the keyword arguments of the lab's method of that name (a setting the
lab does not have is an error, named with its step). In a fleet, ``"vm"`` names the VM of an episode (the
first by default):

    {"do": "wait", "s": 30}
    {"do": "migrate", "dirty_mb_s": 8}          (QEMU: max_bandwidth_mb_s, dirty_mb_s, auto_converge;
                                                  emulated: copy_s, outage_s, lag_ms, delay_ms, jitter_ms,
                                                  relocate_ms: the destination that much RTT farther)
    {"do": "path-change", "seconds": 60, "rtt_ms": 15}   (emulated: a longer route, no move)
    {"do": "pause", "seconds": 2}               {"do": "bulk-transfer", "seconds": 20}
    {"do": "cpu-load", "seconds": 20}           {"do": "clock-step", "step_s": -1}
    {"do": "loss-burst", "seconds": 10, "probability": 0.3}
    {"do": "ttl-change", "seconds": 20, "hops": 2}
    {"do": "shape", "mbit": 100}                (QEMU only; 0 removes it)
    {"do": "repeat", "times": 4, "steps": [...]}
    {"do": "pause", "seconds": 2, "vm": "lab-vm-7"}

Built-in scenarios are the JSON files next to this module (``migwatch lab scenarios`` lists them).

    >>> from migwatch_dev.lab.emulated_lab import EmulatedLab
    >>> scenario = parse({"v": 1, "steps": [{"do": "repeat", "times": 2, "steps": [{"do": "wait", "s": 1}]}]},
    ...                  EmulatedLab, source="example")
    >>> len(scenario.steps), scenario.vms
    (2, ('lab-vm',))
    >>> parse({"v": 1, "steps": [{"do": "migrate", "dirty_mb_s": 8}]}, EmulatedLab, source="example")
    Traceback (most recent call last):
    ...
    migwatch_dev.lab.errors.LabError: example: steps[0].dirty_mb_s: not a setting of migrate in this lab (it has: ...)
"""

from __future__ import annotations

import inspect
import json
import math
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel, write_labels
from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.qemu_lab import Migration
from migwatch_dev.lab.targets import VM_ID, fleet_ids

BUILT_IN = Path(__file__).with_name("scenarios")
_TYPES: dict[Any, tuple[type, ...]] = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}
_MAX_VMS = 8  # the lab's LAN gives them .10 and .21 to .27
# Settings that are offsets (a clock stepped back, a clock left behind); every other one is a size or a time.
_SIGNED = frozenset({"step_s", "lag_ms", "relocate_ms"})


@dataclass(frozen=True)
class Step:
    do: str
    settings: dict[str, Any]

    def describe(self) -> str:
        return self.do + "".join(f" {key}={value}" for key, value in self.settings.items())


@dataclass(frozen=True)
class Scenario:
    vms: tuple[str, ...]  # the fleet's VM ids, the first the default of every episode
    steps: list[Step]


def scenario_names() -> list[str]:
    return sorted(path.stem for path in BUILT_IN.glob("*.json"))


def load(name_or_path: str, lab_type: type, *, source: str | None = None) -> Scenario:
    """A built-in scenario by name, or a JSON file, checked against ``lab_type``'s episodes."""
    path = BUILT_IN / f"{name_or_path}.json" if name_or_path in scenario_names() else Path(name_or_path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise LabError(f"--scenario: no such file or built-in scenario {name_or_path!r} "
                       f"(built in: {', '.join(scenario_names())})") from error  # fmt: skip
    except json.JSONDecodeError as error:
        raise LabError(f"{path}: not JSON: {error}") from error
    return parse(document, lab_type, source=source or str(path))


def parse(document: Any, lab_type: type, *, source: str) -> Scenario:
    if not isinstance(document, dict) or document.get("v") != 1 or not isinstance(document.get("steps"), list):
        raise LabError(f'{source}: must be an object {{"v": 1, "steps": [...]}}, got {str(document)[:80]!r}')
    if unknown := sorted(set(document) - {"v", "vms", "steps"}):
        raise LabError(f"{source}: {unknown[0]}: not a key of a scenario (it has: v, vms, steps)")
    count = document.get("vms", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= _MAX_VMS:
        raise LabError(f"{source}: vms: must be an integer from 1 to {_MAX_VMS}, got {count!r}")
    if count > 1 and "vm" not in _signature("migrate", lab_type):
        raise LabError(f"{source}: vms: this lab has one VM, got {count}")
    vms = fleet_ids(count)
    return Scenario(vms, _steps(document["steps"], lab_type, f"{source}: steps", vms))


def _steps(items: list[Any], lab_type: type, where: str, vms: tuple[str, ...]) -> list[Step]:
    steps: list[Step] = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("do"), str):
            raise LabError(f'{here}: must be an object with a "do" string, got {item!r}')
        settings = {key: value for key, value in item.items() if key != "do"}
        if item["do"] == "repeat":
            times = settings.get("times")
            if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= 1000:
                raise LabError(f"{here}.times: must be an integer from 1 to 1000, got {times!r}")
            if set(settings) != {"times", "steps"} or not isinstance(settings["steps"], list):
                raise LabError(f'{here}: a repeat has exactly "times" and a "steps" list, got {sorted(settings)}')
            steps += _steps(settings["steps"], lab_type, f"{here}.steps", vms) * times
            continue
        _check(item["do"], settings, lab_type, here)
        if settings.get("vm", VM_ID) not in vms:
            raise LabError(f"{here}.vm: not a VM of this scenario's fleet ({', '.join(vms)}), got {settings['vm']!r}")
        steps.append(Step(item["do"], settings))
    return steps


def _signature(do: str, lab_type: type) -> dict[str, inspect.Parameter]:
    if do == "wait":
        return {"s": inspect.Parameter("s", inspect.Parameter.KEYWORD_ONLY, annotation=float)}
    if do.replace("-", "_") not in lab_type.EPISODES:
        raise LabError(f"{do!r}: not an episode of this lab (it has: wait, repeat, "
                       f"{', '.join(e.replace('_', '-') for e in lab_type.EPISODES)})")  # fmt: skip
    method = getattr(lab_type, do.replace("-", "_"))
    hints = typing.get_type_hints(method)
    return {name: p.replace(annotation=hints[name]) for name, p in inspect.signature(method).parameters.items()
            if name not in ("self", "timeout_s")}  # fmt: skip


def _check(do: str, settings: dict[str, Any], lab_type: type, here: str) -> None:
    try:
        parameters = _signature(do, lab_type)
    except LabError as error:
        raise LabError(f"{here}.do: {error}") from None
    for key, value in settings.items():
        if key not in parameters:
            raise LabError(f"{here}.{key}: not a setting of {do} in this lab (it has: {', '.join(sorted(parameters))})")
        wanted = parameters[key].annotation
        if type(value) not in _TYPES[wanted] or (isinstance(value, float) and not math.isfinite(value)):
            raise LabError(f"{here}.{key}: must be {wanted.__name__}, got {value!r}")
        if wanted in (int, float) and value < 0 and key not in _SIGNED:
            raise LabError(f"{here}.{key}: must be >= 0, got {value!r}")
    missing = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty and name not in settings]
    if missing:
        raise LabError(f"{here}: {do} needs {', '.join(missing)}")


def play(lab: Any, steps: list[Step], path: Path, report: Callable[[str], None] = print) -> Labels:
    """Run ``steps`` on ``lab`` in order; every episode's observed times go to the labels file at ``path``,
    written again after each episode (a stopped run keeps what it saw)."""
    labels = Labels()
    write_labels(path, labels)
    for number, step in enumerate(steps, 1):
        report(f"[{number}/{len(steps)}] {step.describe()}")
        if step.do == "wait":
            time.sleep(step.settings["s"])
            continue
        outcome = getattr(lab, step.do.replace("-", "_"))(**step.settings)
        target = step.settings.get("vm", VM_ID)
        if isinstance(outcome, Migration):
            labels.migrations.append(MigrationLabel(
                target=target, start=round(outcome.start, 3), end=round(outcome.end, 3),
                downtime_ms=round(outcome.downtime_ms, 1), source=outcome.source, destination=outcome.destination,
            ))  # fmt: skip
            report(f"    migrated {target} {outcome.source} -> {outcome.destination} in "
                   f"{outcome.end - outcome.start:.1f} s, downtime {outcome.downtime_ms:.0f} ms")  # fmt: skip
            if outcome.crash_log:
                # A guest that crashed after its move is rebooted, as an operator would: labelled as such.
                report(f"    the guest did not come back (its console, with any kernel oops: {outcome.crash_log}); "
                       "booting a fresh one")  # fmt: skip
                write_labels(path, labels)
                start, end = lab.reboot(vm=target)
                labels.benign.append(BenignLabel(target=target, start=round(start, 3), end=round(end, 3),
                                                 kind="reboot", settings={"after_crash": True}))  # fmt: skip
        elif outcome is not None:
            start, end = outcome
            settings = {key: value for key, value in step.settings.items() if key != "vm"}
            labels.benign.append(BenignLabel(target=target, start=round(start, 3), end=round(end, 3), kind=step.do,
                                             settings=settings))  # fmt: skip
        write_labels(path, labels)
    return labels
