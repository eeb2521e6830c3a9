"""Benchmark: `labctl status` (libvirt) against `vagrant status` on the same running lab.

    python bench/status_vs_vagrant.py [--runs 7] [--lab NAME] [--out status-busy.md]

Without --lab it brings up a lab of two small VMs (bench-status), measures, and destroys it.
Whole processes are timed, as a user would run them; results go to bench/results/status.md (or
--out), with the host's load average while they ran: a busy host (a TCG VM running stack.sh beside)
is where the difference shows. Target: labctl status at least 10x faster than vagrant status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

HERE = Path(__file__).resolve().parent
LAB = "name: bench-status\ndefaults: {memory: 1G, cpus: 1, disk: 10G}\nmachines:\n  - {name: a}\n  - {name: b}\n"


def labctl() -> list[str]:
    exe = shutil.which("labctl", path=str(Path(sys.executable).parent)) or shutil.which("labctl")
    return [exe] if exe else [sys.executable, "-m", "labctl"]


def timed(argv: list[str], cwd: Path | None, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lab", help="an existing running lab (default: make one, then destroy it)")
    parser.add_argument("--out", default="status.md", help="file name under bench/results/")
    args = parser.parse_args()
    env = dict(os.environ)
    # As a user's install runs: with Python's bytecode cache (a shell with PYTHONDONTWRITEBYTECODE set
    # compiles every module at every start, about 30 ms more here).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    made = args.lab is None
    work = Path(tempfile.mkdtemp(prefix="labctl-bench-"))
    lab = args.lab or "bench-status"
    try:
        if made:
            (work / "lab.yaml").write_text(LAB)
            subprocess.run([*labctl(), "up", "-f", str(work / "lab.yaml")], check=True, env=env)
        home = Path(env.get("LABCTL_HOME") or Path.home() / ".local/share/labctl")
        lab_dir = home / "labs" / lab
        vagrant_env = {**env, "VAGRANT_DEFAULT_PROVIDER": "libvirt", "VAGRANT_CHECKPOINT_DISABLE": "1"}
        timed([*labctl(), "status", "--lab", lab], None, env)  # warm the page cache for both
        timed(["vagrant", "status"], lab_dir, vagrant_env)
        load_before = os.getloadavg()[0]
        ours = [timed([*labctl(), "status", "--lab", lab], None, env) for _ in range(args.runs)]
        theirs = [timed(["vagrant", "status"], lab_dir, vagrant_env) for _ in range(args.runs)]
        load_after = os.getloadavg()[0]
        machines = subprocess.run([*labctl(), "status", "--lab", lab, "--json"], capture_output=True,
                                  text=True, check=True, env=env).stdout.count('"state": "running"')
    finally:
        if made:
            subprocess.run([*labctl(), "destroy", "-y", "--lab", lab], env=env, check=False)
        shutil.rmtree(work, ignore_errors=True)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = m_theirs / m_ours
    report = "\n".join([
        "# labctl status vs vagrant status", "",
        f"Same lab ({machines} running VMs), whole process, median of {args.runs} runs each; the host's"
        f" load average (1 min) {load_before:.1f} before and {load_after:.1f} after; Python's bytecode cache on,"
        " as an install has it.", "",
        "| command | median | min | max |", "| --- | --- | --- | --- |",
        f"| `labctl status` | {m_ours * 1000:.0f} ms | {min(ours) * 1000:.0f} ms | {max(ours) * 1000:.0f} ms |",
        f"| `vagrant status` | {m_theirs * 1000:.0f} ms | {min(theirs) * 1000:.0f} ms | {max(theirs) * 1000:.0f} ms |",
        "", f"labctl is **{ratio:.1f}x** faster (target: at least 10x): {'met' if ratio >= 10 else 'NOT met'}.",
        "", "## Machine", describe(), ""])
    out = HERE / "results" / Path(args.out).name
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
