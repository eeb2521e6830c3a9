"""Where the time of a real DevStack goes: one keystone-only run of DevStack master, phase by phase.

    .venv/bin/python bench/devstack_real.py            # a new lab from ../shared/mirrors: up, measure, destroy
    .venv/bin/python bench/devstack_real.py --lab NAME  # a lab that has stacked already: measure only

Writes bench/results/devstack.md with the machine's description. The phases and their durations are
the ones `labctl stack` keeps (`labctl status --json`), measured by labctl as stack.sh's output arrives.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, labctl

ROOT = Path(__file__).resolve().parent.parent
MIRRORS = ROOT.parent / "shared" / "mirrors"
OUT = ROOT / "bench" / "results" / "devstack.md"


def new_lab(folder: Path, mirrors: Path) -> tuple[str, float]:
    name = f"bench-{os.getpid()}"
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    lines = [f"name: {name}", "defaults: {distro: debian:12, memory: 8G, cpus: 2, disk: 20G}", "machines:",
             "  - {name: ks}"]
    if cas:
        lines += ["ca_certificates:", *(f"  - {p}" for p in cas)]
    lines += ["devstack:", f"  git_base: {mirrors}", "  localrc: {ENABLED_SERVICES: 'key,mysql'}"]
    (folder / "lab.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    labctl("up", cwd=folder)
    return name, time.monotonic() - started


def minutes(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", help="measure a lab that has stacked already (nothing is created or destroyed)")
    parser.add_argument("--mirrors", type=Path, default=MIRRORS, help=f"the git mirrors (default: {MIRRORS})")
    args = parser.parse_args()
    up_seconds = None
    with tempfile.TemporaryDirectory() as tmp:
        name = args.lab
        if name is None:
            name, up_seconds = new_lab(Path(tmp), args.mirrors.resolve())
        status = json.loads(labctl("status", "--json", "--lab", name).stdout)["machines"]
        if args.lab is None:
            labctl("destroy", "-y", "--lab", name, check=False)
    machine = status[0]
    phases = [(p["phase"], p["seconds"]) for p in machine["devstack_phases"]]
    if machine["devstack"] != "stacked" or not phases:
        sys.exit(f"{name}: DevStack is {machine['devstack']!r}, with no phases recorded: nothing to measure")
    total = sum(s for _, s in phases)
    rows = "\n".join(f"| {phase} | {minutes(seconds)} | {100 * seconds / total:.0f} % |" for phase, seconds in phases)
    whole = f"`labctl up`, from nothing to Keystone serving: {minutes(up_seconds)}.\n" if up_seconds else ""
    OUT.write_text(f"""# The real DevStack, phase by phase

DevStack master (../shared/mirrors, served by labctl from the host), `ENABLED_SERVICES=key,mysql`, in one
Debian 12 VM (8 GiB, 2 vCPUs) built by `labctl box build`; phases as `labctl stack` measured them.
{whole}
| phase | time | share |
| --- | --- | --- |
{rows}
| stack.sh in all | {minutes(total)} | |

"starting" is stack.sh before its first phase (its own checks, `git_clone` of requirements, Python).

## Machine
{describe()}
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
