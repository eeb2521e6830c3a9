"""A classroom at the speed of one seat: wall time to N ready seats of the real keystone-only DevStack,
and the bytes the host's caches fetched from outside for them.

    .venv/bin/python bench/classroom.py --seats 1          # one seat, caches emptied first
    .venv/bin/python bench/classroom.py --seats 4          # four seats (cloned from the first)
    .venv/bin/python bench/classroom.py --seats 4 --no-clone
    .venv/bin/python bench/classroom.py --seats 1 --cut    # warm caches, the outside cut: does a seat stack?
    .venv/bin/python bench/classroom.py --report           # only write the report from the runs so far

Each run: the host's caches are stopped and emptied (unless --warm), then `labctl up` of a classroom
lab of N seats (4 GiB, 2 vCPUs, Debian 12, DevStack master from ../shared/mirrors, ENABLED_SERVICES=
key,mysql) from nothing to every seat stacked; the wall time is `labctl up`'s. A seat is ready when
its own Keystone issues a token for admin with that seat's password, and refuses another seat's.
--cut: the caches as the runs before left them, started --offline (they fetch nothing), and the
machines' proxy an address that routes nowhere (192.0.2.1, TEST-NET-1): whatever does not come from
the host's caches or mirrors cannot be fetched.
Bytes from outside: what the caches say they fetched (apt-cacher-ng's upstream bytes, devpi-server's
files), before and after. Each run is kept in bench/results/classroom.jsonl; the report,
bench/results/classroom.md, compares the last run of each kind, with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from machine import describe, labctl

ROOT = Path(__file__).resolve().parent.parent
MIRRORS = ROOT.parent / "shared" / "mirrors"
RUNS = ROOT / "bench" / "results" / "classroom.jsonl"
OUT = ROOT / "bench" / "results" / "classroom.md"


def token(auth_url: str, password: str) -> int:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    request = urllib.request.Request(f"{auth_url}/v3/auth/tokens", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def cache_counts() -> dict[str, int]:
    data = json.loads(labctl("cache", "--json").stdout)
    return {c["name"]: int(c["fetched_bytes"]) for c in data["caches"]}


def empty_caches() -> None:
    labctl("cache", "stop")
    folder = Path(json.loads(labctl("cache", "--json").stdout)["folder"])
    shutil.rmtree(folder, ignore_errors=True)


UNROUTABLE = "http://192.0.2.1:9"  # TEST-NET-1: routed nowhere


def run(seats: int, clone: bool, warm: bool, keep: bool, cut: bool = False) -> dict[str, object]:
    if cut:
        labctl("cache", "start", "--offline")
    elif not warm:
        empty_caches()
    folder = Path(tempfile.mkdtemp(prefix="bench-classroom-"))
    name = f"class{seats}{'c' if clone else 'n'}-{os.getpid() % 10000}"
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    lines = [f"name: {name}", "defaults: {distro: debian:12, memory: 4G, cpus: 2, disk: 20G}",
             f"classroom: {{seats: {seats}, clone: {'true' if clone else 'false'},"
             f" ssh_port: {22000 + os.getpid() % 1000 * 10}}}"]
    if cas:  # a TLS-intercepting proxy between the VMs and PyPI: its CA is trusted inside
        lines += ["ca_certificates:", *(f"  - {p}" for p in cas)]
    if cut:
        lines += ["proxy:", f"  http: {UNROUTABLE}", f"  https: {UNROUTABLE}"]
    lines += ["devstack:", f"  git_base: {MIRRORS}", "  localrc: {ENABLED_SERVICES: 'key,mysql'}"]
    (folder / "lab.yaml").write_text("\n".join(lines) + "\n")
    before = cache_counts() if warm or cut else {"apt": 0, "pypi": 0}
    started = time.monotonic()
    with (folder / "up.log").open("w") as log:
        up = subprocess.run([sys.executable, "-m", "labctl", "up"], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, check=False)
    wall = time.monotonic() - started
    if up.returncode != 0:
        sys.exit(f"labctl up failed ({up.returncode}); see {folder / 'up.log'}")
    after = cache_counts()
    creds = json.loads(labctl("creds", "--json", "--lab", name).stdout)["machines"]
    checks = {}
    names = sorted(creds)
    for i, seat in enumerate(names):
        other = creds[names[(i + 1) % len(names)]]["password"] if len(names) > 1 else creds[seat]["password"] + "x"
        checks[seat] = [token(creds[seat]["auth_url"], creds[seat]["password"]),
                        token(creds[seat]["auth_url"], other)]
    record = {"seats": seats, "clone": clone, "warm": warm or cut, "cut": cut, "wall_s": round(wall),
              "date": time.strftime("%F %T"),
              "apt_bytes": after["apt"] - before["apt"], "pypi_bytes": after["pypi"] - before["pypi"],
              "tokens": checks, "lab": name}
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    with RUNS.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    if not keep:
        labctl("destroy", "-y", "--lab", name)
    if cut:
        labctl("cache", "start")  # online again
    return record


def report() -> None:
    records = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()] if RUNS.exists() else []
    last: dict[tuple[int, bool, bool, bool], dict[str, object]] = {}
    for r in records:
        last[(int(r["seats"]), bool(r["clone"]), bool(r["warm"]), bool(r.get("cut")))] = r
    rows = []
    for (seats, clone, warm, cut), r in sorted(last.items()):
        tokens = r["tokens"]
        assert isinstance(tokens, dict)
        ready = all(own == 201 and other == 401 for own, other in tokens.values())
        total = int(r["apt_bytes"]) + int(r["pypi_bytes"])  # type: ignore[call-overload]
        rows.append((seats, clone, warm, cut, r, total, ready))
    out = ["# A classroom at the speed of one seat", "",
           "The real keystone-only DevStack (master, from ../shared/mirrors), Debian 12 seats of 4 GiB and 2 vCPUs,"
           " software emulation. Time: `labctl up` from nothing to every seat stacked. Bytes from outside: what"
           " the host's caches fetched (apt-cacher-ng's upstream bytes, devpi-server's files). Ready: each seat's"
           " Keystone issues a token for admin with that seat's password (201) and refuses the next seat's (401).",
           "", "| seats | how | caches | wall time | apt from outside | PyPI from outside | total | every seat ready |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seats, clone, warm, cut, r, total, ready in rows:
        wall = int(r["wall_s"])  # type: ignore[call-overload]
        caches = "warm, outside cut" if cut else "warm" if warm else "emptied first"
        out.append(f"| {seats} | {'cloned from seat-01' if clone and seats > 1 else 'each seat stacks'} |"
                   f" {caches} | {wall // 60}m{wall % 60:02d}s |"
                   f" {int(r['apt_bytes']) / 2**20:.1f} MiB | {int(r['pypi_bytes']) / 2**20:.1f} MiB |"  # type: ignore[call-overload]
                   f" {total / 2**20:.1f} MiB | {'yes' if ready else 'NO'} |")
    one = last.get((1, True, False, False)) or last.get((1, False, False, False))
    four = last.get((4, True, False, False))
    if one and four:
        t = int(four["wall_s"]) / int(one["wall_s"])  # type: ignore[call-overload]
        b1 = int(one["apt_bytes"]) + int(one["pypi_bytes"])  # type: ignore[call-overload]
        b4 = int(four["apt_bytes"]) + int(four["pypi_bytes"])  # type: ignore[call-overload]
        out += ["", f"4 seats take {t:.2f}x the wall time of 1 (target: at most 1.5x):"
                    f" {'met' if t <= 1.5 else 'NOT met'}.",
                f"4 seats fetch {b4 / b1:.2f}x the bytes of 1 (target: at most 1.1x): "
                f"{'met' if b4 <= 1.1 * b1 else 'NOT met'}."]
    out += ["", "## Machine", describe(), ""]
    OUT.write_text("\n".join(out))
    print(OUT.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seats", type=int, default=1)
    parser.add_argument("--no-clone", action="store_true")
    parser.add_argument("--warm", action="store_true", help="keep the caches as they are")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--cut", action="store_true", help="warm caches --offline, machines' proxy unroutable")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if not args.report:
        print(json.dumps(run(args.seats, not args.no_clone, args.warm, args.keep, args.cut)))
    report()


if __name__ == "__main__":
    main()
