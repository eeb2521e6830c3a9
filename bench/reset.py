"""How long `labctl reset` takes to bring a broken seat back to its `stacked` snapshot, under software
emulation, with DevStack running again when it returns.

    .venv/bin/python bench/reset.py                  # a 1-seat classroom, stand-in DevStack, 1 GiB and 4 GiB
    .venv/bin/python bench/reset.py --real           # + the real keystone-only DevStack (8 GiB, ~30 min)
    .venv/bin/python bench/reset.py --lab NAME       # a lab that has stacked already: measure only

Each measure: break the seat (delete a file DevStack wrote), `labctl reset`, then check the file is
back; the time is `labctl reset`'s wall time, SSH answering and the clock set included. Three runs
each. Writes bench/results/reset.md with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, labctl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
MIRRORS = ROOT.parent / "shared" / "mirrors"
OUT = ROOT / "bench" / "results" / "reset.md"
RUNS = 3


def new_lab(folder: Path, memory: str, real: bool, mirrors: Path) -> str:
    name = f"reset-{memory.lower()}-{os.getpid()}"
    lines = [f"name: {name}", f"defaults: {{distro: debian:12, memory: {memory}, cpus: 2, disk: 20G}}",
             "classroom: {seats: 1, ssh_port: " + str(24000 + os.getpid() % 1000 * 2) + "}"]
    if real:
        cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        if cas:
            lines += ["ca_certificates:", *(f"  - {p}" for p in cas)]
        lines += ["devstack:", f"  git_base: {mirrors}", "  localrc: {ENABLED_SERVICES: 'key,mysql'}"]
    else:
        from standin_devstack import make_repo

        repo = make_repo(folder / "devstack")
        lines += ["devstack:", f"  repo: {repo}", "  localrc: {STANDIN_PHASE_SECONDS: 0.1}"]
    (folder / "lab.yaml").write_text("\n".join(lines) + "\n")
    labctl("up", cwd=folder)
    return name


def measure(name: str, marker: str) -> list[float]:
    times = []
    for _ in range(RUNS):
        labctl("exec", "seat-01", "--lab", name, "--", f"sudo rm -f {marker}")
        started = time.monotonic()
        labctl("reset", "seat-01", "--lab", name)
        times.append(time.monotonic() - started)
        back = labctl("exec", "seat-01", "--lab", name, "--", f"test -e {marker}", check=False)
        if back.returncode != 0:
            sys.exit(f"{name}: {marker} is not back after the reset")
    return times


def keystone_answers(name: str) -> bool:
    creds = labctl("creds", "seat-01", "--lab", name).stdout
    openrc = creds.split("# openrc", 1)[1].split("\n", 1)[1]
    return labctl("exec", "seat-01", "--lab", name, "--", openrc + "openstack token issue -f value -c id",
                  check=False).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", help="a classroom lab that has stacked already (nothing created or destroyed)")
    parser.add_argument("--real", action="store_true", help="also the real keystone-only DevStack (8 GiB)")
    parser.add_argument("--mirrors", type=Path, default=MIRRORS, help=f"the git mirrors (default: {MIRRORS})")
    args = parser.parse_args()
    rows = []
    cases: list[tuple[str, bool]] = [] if args.lab else [("1G", False), ("4G", False)]
    if args.real and not args.lab:
        cases.append(("8G", True))
    with tempfile.TemporaryDirectory() as tmp:
        for memory, real in cases:
            folder = Path(tmp) / memory
            folder.mkdir()
            name = new_lab(folder, memory, real, args.mirrors.resolve())
            try:
                marker = "/opt/stack/devstack/.stackenv" if real else "/opt/stack/standin-stacked"
                times = measure(name, marker)
                note = "Keystone issues a token after the last reset" if real and keystone_answers(name) else ""
            finally:
                labctl("destroy", "-y", "--lab", name, check=False)
            what = "real keystone-only DevStack" if real else "stand-in DevStack"
            rows.append(f"| {memory} | {what} | {statistics.median(times):.1f} s | "
                        f"{', '.join(f'{t:.1f}' for t in times)} | {note} |")
        if args.lab:
            status = json.loads(labctl("status", "--json", "--lab", args.lab).stdout)["machines"][0]
            times = measure(args.lab, "/opt/stack/devstack/.stackenv")
            rows.append(f"| {status['memory_mb']} MiB | lab {args.lab} | {statistics.median(times):.1f} s |"
                        f" {', '.join(f'{t:.1f}' for t in times)} | |")
    table = "\n".join(rows)
    OUT.write_text(f"""# `labctl reset`: a broken seat back to its `stacked` snapshot

Software emulation (TCG), Debian 12 seats, 2 vCPUs. The snapshot is libvirt's internal one, memory
included, taken by labctl when the seat stacked. The time is `labctl reset seat-01` from start to exit:
the revert, SSH answering again, and the seat's clock set to the host's. {RUNS} runs each.

| seat memory | DevStack | median | runs (s) | checked |
| --- | --- | --- | --- | --- |
{table}

## Machine
{describe()}
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
