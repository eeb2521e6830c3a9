"""The machine a benchmark ran on, written beside its results; and how the benchmarks run labctl."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _first(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def describe() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    flags = Path("/proc/cpuinfo").read_text()
    accel = "KVM possible" if (" vmx" in flags or " svm" in flags) else "no vmx/svm: software emulation (TCG)"
    return "\n".join([
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- CPU: {cpu}, {os.cpu_count()} cores ({accel})",
        f"- memory: {mem_kb // 1024} MiB",
        f"- kernel: {platform.release()}; Python {platform.python_version()}",
        f"- {_first(['vagrant', '--version'])}; libvirt {_first(['virsh', '--version'])}",
    ])


def labctl(*argv: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """labctl as a user runs it (this interpreter's); on failure, the benchmark stops with its words."""
    proc = subprocess.run([sys.executable, "-m", "labctl", *argv], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        sys.exit(f"labctl {' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-3000:]}{proc.stdout[-2000:]}")
    return proc
