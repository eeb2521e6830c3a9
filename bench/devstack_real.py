"""Where the time of a real DevStack goes: one run, phase by phase.

    .venv/bin/python bench/devstack_real.py            # a new lab from ../shared/mirrors: up, measure, destroy
    .venv/bin/python bench/devstack_real.py --lab NAME  # a lab that has stacked already: measure only
    .venv/bin/python bench/devstack_real.py --compute   # Nova, Neutron/OVN, Glance, Placement (stable/2026.1)

Keystone-only DevStack master by default (bench/results/devstack.md); with --compute, the compute
DevStack of issue 20 (bench/results/devstack-compute.md). Each with the machine's description. The
phases and their durations are the ones `labctl stack` keeps (`labctl status --json`), measured by
labctl as stack.sh's output arrives.
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
RESULTS = ROOT / "bench" / "results"
COMPUTE = ("key,mysql,rabbit,n-api,n-cpu,n-cond,n-sch,n-api-meta,placement-api,placement-client,g-api,"
           "ovn-controller,ovn-northd,ovs-vswitchd,ovsdb-server,q-svc,q-ovn-agent")
KINDS = {  # what is stacked, and in what
    "keystone": ("DevStack master, `ENABLED_SERVICES=key,mysql`, in one Debian 12 VM (8 GiB, 2 vCPUs)",
                 {"memory": "8G", "disk": "20G"}, {"ENABLED_SERVICES": "key,mysql"}, None, "devstack.md"),
    "compute": (f"DevStack stable/2026.1, `ENABLED_SERVICES={COMPUTE}`, `DOWNLOAD_DEFAULT_IMAGES=False`, in one"
                " Debian 12 VM (10 GiB, 2 vCPUs)", {"memory": "10G", "disk": "30G"},
                {"ENABLED_SERVICES": COMPUTE, "DOWNLOAD_DEFAULT_IMAGES": False}, "stable/2026.1",
                "devstack-compute.md"),
}


def new_lab(folder: Path, mirrors: Path, kind: str) -> tuple[str, float]:
    _, size, localrc, branch, _ = KINDS[kind]
    name = f"bench-{os.getpid()}"
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    lab = {"name": name, "defaults": {"distro": "debian:12", "cpus": 2, **size}, "machines": [{"name": "ks"}],
           **({"ca_certificates": [str(p) for p in cas]} if cas else {}),
           "devstack": {"git_base": str(mirrors), "localrc": localrc, **({"branch": branch} if branch else {})}}
    (folder / "lab.yaml").write_text(json.dumps(lab, indent=2) + "\n")  # JSON is YAML
    started = time.monotonic()
    labctl("up", cwd=folder)
    return name, time.monotonic() - started


def minutes(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", help="measure a lab that has stacked already (nothing is created or destroyed)")
    parser.add_argument("--mirrors", type=Path, default=MIRRORS, help=f"the git mirrors (default: {MIRRORS})")
    parser.add_argument("--compute", action="store_const", const="compute", default="keystone", dest="kind",
                        help="the compute DevStack (Nova, Neutron/OVN, Glance, Placement) instead of keystone-only")
    args = parser.parse_args()
    what, _, _, _, out_name = KINDS[args.kind]
    out = RESULTS / out_name
    up_seconds = None
    with tempfile.TemporaryDirectory() as tmp:
        name = args.lab
        if name is None:
            name, up_seconds = new_lab(Path(tmp), args.mirrors.resolve(), args.kind)
        status = json.loads(labctl("status", "--json", "--lab", name).stdout)["machines"]
        if args.lab is None:
            labctl("destroy", "-y", "--lab", name, check=False)
    machine = status[0]
    phases = [(p["phase"], p["seconds"]) for p in machine["devstack_phases"]]
    if machine["devstack"] != "stacked" or not phases:
        sys.exit(f"{name}: DevStack is {machine['devstack']!r}, with no phases recorded: nothing to measure")
    total = sum(s for _, s in phases)
    rows = "\n".join(f"| {phase} | {minutes(seconds)} | {100 * seconds / total:.0f} % |" for phase, seconds in phases)
    whole = f"`labctl up`, from nothing to a cloud that answers: {minutes(up_seconds)}.\n" if up_seconds else ""
    out.write_text(f"""# The real DevStack, phase by phase

{what}, from ../shared/mirrors (served by labctl from the host), built by `labctl box build`; phases as
`labctl stack` measured them.
{whole}
| phase | time | share |
| --- | --- | --- |
{rows}
| stack.sh in all | {minutes(total)} | |

"starting" is stack.sh before its first phase (its own checks, `git_clone` of requirements, Python).

## Machine
{describe()}
""")
    print(out.read_text())


if __name__ == "__main__":
    main()
