"""``migwatch lab``: play a scenario on the QEMU or the emulated lab, recording with the real probes.

    migwatch lab run --mode qemu --scenario fast --out runs/fast --record 1 --record 0.1
    migwatch lab corpus --out corpus/          # every corpus scenario, recorded, then scored
    migwatch lab score --out corpus/           # score the runs again (after a detector change)
    migwatch lab scenarios                     # the built-in scenarios

A run's folder gets ``labels.json`` (rewritten after every episode), ``config-<interval>.toml`` (the
lab's targets, for ``migwatch record``/``probe``/``watch``) and ``trace-<interval>.jsonl.gz`` per
``--record``. SIGINT or SIGTERM stops the run; QEMU, the namespaces and the recorders always go.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migwatch.contract.labels import Labels
from migwatch_dev.lab.emulated_lab import EmulatedLab, emulated_lab
from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.processes import stop
from migwatch_dev.lab.qemu_lab import QemuLab, qemu_lab
from migwatch_dev.lab.scenario import load, play, scenario_names
from migwatch_dev.lab.targets import write_config

MODES: dict[str, type] = {"qemu": QemuLab, "emulated": EmulatedLab}
# The corpus: three QEMU migration settings and the benign episodes (issue #6), moves to a farther site and
# back with reroutes, and the same moves within the site (issue #21, emulated), a fleet of three VMs of one
# partition with moves and look-alikes among them (issue #20); each watched at 1 s and 100 ms.
CORPUS = {"fast": "qemu", "shaped": "qemu", "capped": "qemu", "benign": "qemu", "relocated": "emulated",
          "same-site": "emulated", "fleet": "qemu"}  # fmt: skip
CORPUS_INTERVALS = (1.0, 0.1)


@contextlib.contextmanager
def open_lab(mode: str, folder: Path, vms: int = 1) -> Iterator[Any]:
    with qemu_lab(folder / "lab", vms) if mode == "qemu" else emulated_lab(folder / "lab") as lab:
        yield lab


def _interval_name(interval_s: float) -> str:
    return f"{interval_s * 1000:g}ms"


@contextlib.contextmanager
def recorders(
    folder: Path, addresses: dict[str, str], intervals: list[float], ntp_interval_s: float, vms: tuple[str, ...]
) -> Iterator[list[Path]]:
    """``migwatch record`` per interval, stopped with SIGTERM (which closes each trace cleanly)."""
    processes: list[subprocess.Popen[bytes]] = []
    traces = []
    try:
        for interval in intervals:
            name = _interval_name(interval)
            config = write_config(folder / f"config-{name}.toml", addresses, ping_interval_s=interval,
                                  ntp_interval_s=ntp_interval_s, vms=vms)  # fmt: skip
            traces.append(folder / f"trace-{name}.jsonl.gz")
            log = open(folder / f"record-{name}.log", "wb")  # noqa: SIM115 - the child holds it
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "migwatch.cli", "record", "--config", str(config), "--out", str(traces[-1]),
                 "--duration", str(30 * 86400)], stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            log.close()
        yield traces
    finally:
        for process in processes:
            if stop(process, 30) not in (0, -signal.SIGTERM):
                print(f"migwatch lab: a recorder exited with {process.returncode}; see {folder}/record-*.log",
                      file=sys.stderr)  # fmt: skip


def run_scenario(mode: str, scenario: str, folder: Path, intervals: list[float], ntp_interval_s: float) -> Labels:
    played = load(scenario, MODES[mode])  # a bad scenario fails before anything is set up
    folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with (open_lab(mode, folder, len(played.vms)) as lab,
          recorders(folder, lab.addresses, intervals, ntp_interval_s, played.vms)):  # fmt: skip
        print(f"lab ({mode}) up in {time.monotonic() - began:.0f} s: " +
              ", ".join(f"{name} {address}" for name, address in lab.addresses.items()), flush=True)  # fmt: skip
        labels = play(lab, played.steps, folder / "labels.json", report=lambda line: print(line, flush=True))
    print(f"{folder}: {len(labels.migrations)} migrations, {len(labels.benign)} benign episodes "
          f"in {time.monotonic() - began:.0f} s")  # fmt: skip
    return labels


def score(folder: Path) -> dict[str, Any]:
    """``migwatch eval --config`` of every trace of one run against its labels, with the run's config (its
    targets: the VM's hypervisors, as the probes watched them)."""
    from migwatch.contract.config import load
    from migwatch.contract.labels import read_labels
    from migwatch.detectors.evaluate import alert_keys
    from migwatch.detectors.evaluate import score as evaluate
    from migwatch.detectors.target_group import Directory
    from migwatch.replay import replay

    labels = read_labels(folder / "labels.json")
    results = {}
    for trace in sorted(folder.glob("trace-*.jsonl.gz")):
        config = load(folder / trace.name.replace("trace-", "config-").replace(".jsonl.gz", ".toml"))
        replayed = replay(trace, config.detectors, directory=Directory.of(config.targets, config.silences))
        results[trace.name] = evaluate(alert_keys(replayed), labels)
    return results


def score_corpus(root: Path) -> dict[str, Any]:
    """Scores of every run under ``root`` (a folder with labels.json each), also written to results.json, and
    the confusion matrix of all runs per pinging interval."""
    from migwatch.detectors.evaluate import confusion_table

    summary = {folder.name: score(folder) for folder in sorted(root.iterdir()) if (folder / "labels.json").exists()}
    (root / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"{'run':<10} {'trace':<22} {'migr.':>5} {'found':>5} {'recall':>6} {'alerts':>6} {'false':>5} "
          f"{'benign':>6} {'b.alerted':>9} {'delay p50':>9} {'max':>6} {'warned':>6}")  # fmt: skip
    confusion: dict[str, dict[str, dict[str, int]]] = {}  # trace name (its pinging) -> the runs' matrix summed
    for run, traces in summary.items():
        for trace, r in traces.items():
            delay, early = r["delay_s"], r["early_warning"]
            median = "-" if delay["median"] is None else f"{delay['median']:+.1f} s"
            worst = "-" if delay["max"] is None else f"{delay['max']:+.1f} s"
            warned = f"{early['warned']}/{early['long_migrations']}" if early["long_migrations"] else "-"
            print(f"{run:<10} {trace:<22} {r['migrations']:>5} {r['detected']:>5} {r['recall']:>6.2f} "
                  f"{r['alerts']:>6} {r['false_alarms']:>5} {r['benign_episodes']:>6} {r['benign_alerted']:>9} "
                  f"{median:>9} {worst:>6} {warned:>6}")  # fmt: skip
            summed = confusion.setdefault(trace, {})
            for kind, row in r["confusion"].items():
                for name, count in row.items():
                    summed.setdefault(kind, {}).setdefault(name, 0)
                    summed[kind][name] += count
    for trace, matrix in confusion.items():
        print(f"\nwhat each labelled episode was named, all runs, {trace}:")
        print("\n".join(confusion_table(dict(sorted(matrix.items())))))
    return summary


def _corpus(args: argparse.Namespace) -> int:
    for name in args.only or CORPUS:
        print(f"== corpus: {name}", flush=True)
        run_scenario(CORPUS[name], name, args.out / name, list(CORPUS_INTERVALS), args.ntp_interval)
    score_corpus(args.out)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="play one scenario, optionally recording traces")
    run.add_argument("--mode", choices=sorted(MODES), default="qemu", help="a real QEMU guest or an emulated host")
    run.add_argument("--scenario", required=True, help=f"built-in ({', '.join(scenario_names())}) or a JSON file")
    run.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for labels, configs, traces")
    for sub in (run, corpus := actions.add_parser("corpus", help="record and score the lab corpus")):
        sub.add_argument("--ntp-interval", type=float, default=5.0, metavar="S", help="NTP query interval")
    run.add_argument("--record", type=float, action="append", default=[], metavar="S",
                     help="record a trace pinging every S seconds (repeatable)")  # fmt: skip
    corpus.add_argument("--out", type=Path, required=True, metavar="DIR")
    corpus.add_argument("--only", action="append", choices=CORPUS, help="only this scenario (repeatable)")
    actions.add_parser("scenarios", help="list the built-in scenarios")
    scoring = actions.add_parser("score", help="score every run in a corpus folder (writes results.json)")
    scoring.add_argument("--out", type=Path, required=True, metavar="DIR")


def run(args: argparse.Namespace) -> int:
    # SIGTERM unwinds like Ctrl-C, so that the lab's clean-up runs either way. SIGINT too, even when the
    # lab was started with it ignored (a shell's background job, nohup): Python then leaves it ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.action == "scenarios":
            for name in scenario_names():
                print(name)
            return 0
        if args.action == "corpus":
            return _corpus(args)
        if args.action == "score":
            score_corpus(args.out)
            return 0
        for interval in args.record:
            if not 0.01 <= interval <= 60:
                raise LabError(f"--record: must be between 0.01 and 60 s, got {interval!r}")
        run_scenario(args.mode, args.scenario, args.out, args.record, args.ntp_interval)
        return 0
    except LabError as error:
        print(f"migwatch lab: error: {error}", file=sys.stderr)
        return 2
