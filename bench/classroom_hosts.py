"""A classroom on one host and on two: seats per minute, and the bytes sent to the second host.

    .venv/bin/python bench/classroom_hosts.py --seats 4 --hosts 1   # every seat on this machine
    .venv/bin/python bench/classroom_hosts.py --seats 4 --hosts 2   # half of them on a second host
    .venv/bin/python bench/classroom_hosts.py --report              # only write the report

The second host is the tests' (tests/second_host.py): a libvirtd in namespaces of its own on this same
machine, reached through its own sshd. It shares this machine's CPUs, so two hosts here cannot stack
faster than one: what this measures is what spreading costs (the base sent through libvirt's volume
streams over SSH, the relays to the caches and mirrors, the box uploaded to the second host), not the
speed-up that a second real machine brings. Seats: the stand-in DevStack (tests/standin), Debian 12,
1 GiB, 1 vCPU, stacked once and cloned; the wall time is `labctl up`'s, from nothing to every seat
made and its cloud answering. Runs are kept in bench/results/classroom-hosts.jsonl; the report,
bench/results/classroom-hosts.md, shows the last run of each kind, with the machine's description.
Needs root (namespaces) and the test cache's boxes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, labctl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
RUNS = ROOT / "bench" / "results" / "classroom-hosts.jsonl"
OUT = ROOT / "bench" / "results" / "classroom-hosts.md"
SEAT_MB = 1024


def run(seats: int, hosts: int) -> dict[str, object]:
    from second_host import SecondHost
    from standin_devstack import make_repo

    folder = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    name = f"hosts{hosts}-{os.getpid() % 10000}"
    second = SecondHost(folder / "second", index=61).start() if hosts == 2 else None
    os.environ.pop("LABCTL_HOSTS", None)
    try:
        if second is not None:
            inventory = folder / "hosts.yaml"
            inventory.write_text("hosts:\n  - {name: here, uri: 'qemu:///system'}\n" + second.inventory_line())
            os.environ["LABCTL_HOSTS"] = str(inventory)
            free = {h["name"]: h["memory_free_mb"] for h in json.loads(labctl("hosts", "--json").stdout)["hosts"]}
            half = (seats + 1) // 2
            reserve = {n: max(0, mb - half * SEAT_MB - SEAT_MB // 2) for n, mb in free.items()}
            inventory.write_text(f"hosts:\n  - {{name: here, uri: 'qemu:///system', reserve: {reserve['here']}M}}\n"
                                 + second.inventory_line().replace("}", f", reserve: {reserve['second']}M}}"))
        repo = make_repo(folder / "devstack")
        (folder / "lab.yaml").write_text(
            f"name: {name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\ncaches: true\n"
            f"classroom: {{seats: {seats}, ssh_port: {24000 + os.getpid() % 400 * 10}}}\n"
            f"devstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n")
        started = time.monotonic()
        up = subprocess.run([sys.executable, "-m", "labctl", "up", "--json"], cwd=folder, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - started
        (folder / "up.log").write_text(up.stderr)
        if up.returncode != 0:
            sys.exit(f"labctl up failed ({up.returncode}); see {folder / 'up.log'}")
        report = json.loads(up.stdout)
        sent = [(m.group(1), float(m.group(2)), float(m.group(3))) for m in
                re.finditer(r"(host \S+|this machine) has the base: (\d+) MiB sent in (\d+) s", up.stderr)]
        record = {"seats": seats, "hosts": hosts, "wall_s": round(wall), "date": time.strftime("%F %T"),
                  "sent": [{"host": h, "mib": mib, "seconds": s} for h, mib, s in sent],
                  "placed": {m["name"]: m["host"] for m in report["machines"]},
                  "healthy": all(not any(c["state"] == "failed" for c in h.values())
                                 for h in report["health"].values())}
        labctl("destroy", "-y", "--lab", name, check=False)
    finally:
        if second is not None:
            second.stop()
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    with RUNS.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def report() -> None:
    records = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()] if RUNS.exists() else []
    last = {(int(r["seats"]), int(r["hosts"])): r for r in records}
    out = ["# A classroom on one host and on two", "",
           "Stand-in DevStack seats (Debian 12, 1 GiB, 1 vCPU), stacked once and cloned, `caches: true`. Time:"
           " `labctl up` from nothing to every seat made and answering. The second host is a libvirtd in"
           " namespaces of its own on this same machine (tests/second_host.py), reached through its sshd: it"
           " shares this machine's 2 CPUs, so these figures show what spreading a class costs, not what a"
           " second real machine would add.", "",
           "| seats | hosts | wall time | seats per minute | sent to the other host | every seat healthy |",
           "| --- | --- | --- | --- | --- | --- |"]
    for (seats, hosts), r in sorted(last.items()):
        wall = int(r["wall_s"])
        sent = ", ".join(f"{s['host']}: {s['mib']:.0f} MiB in {s['seconds']:.0f} s" for s in r["sent"]) or "nothing"
        out.append(f"| {seats} | {hosts} | {wall // 60}m{wall % 60:02d}s | {seats / (wall / 60):.2f} | {sent} |"
                   f" {'yes' if r['healthy'] else 'NO'} |")
    out += ["", "## Machine", describe(), ""]
    OUT.write_text("\n".join(out))
    print(OUT.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seats", type=int, default=4)
    parser.add_argument("--hosts", type=int, choices=(1, 2), default=2)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if not args.report:
        print(json.dumps(run(args.seats, args.hosts)))
    report()


if __name__ == "__main__":
    main()
