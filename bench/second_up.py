"""The second DevStack in minutes: a first `labctl up` stacks keystone-only DevStack master from
../shared/mirrors and keeps its disk as a stacked image; a second lab of the same settings is made from
that image. Each is timed from the command's start to Keystone issuing a token with `labctl creds`'
password, and the second's time is shown step by step (what its progress said, and when). Then a third
lab stacks afresh (`up --fresh`) through the host's package caches the first one filled: the first stack
with warm caches, phase by phase. All three use the host's caches (`caches: true`).

    .venv/bin/python bench/second_up.py          # both labs made, measured, destroyed, the image removed
    .venv/bin/python bench/second_up.py --keep   # the image kept (labctl images)
    .venv/bin/python bench/second_up.py --warm-only  # only the warm-cache stack again (its section replaced)
    .venv/bin/python bench/second_up.py --second-only  # only a second up again, from the image kept (its section)
    .venv/bin/python bench/second_up.py --no-warm  # first and second up only (the warm section kept as it was)
    .venv/bin/python bench/second_up.py --warm-only --preinstall  # the warm stack on the DevStack-ready box

Results: bench/results/second-up.md, with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from devstack_real import MIRRORS, RESULTS, minutes
from machine import describe, labctl

SETTINGS = {"defaults": {"distro": "debian:12", "cpus": 2, "memory": "8G", "disk": "20G"},
            "machines": [{"name": "ks"}], "caches": True, "devstack": {"localrc": {"ENABLED_SERVICES": "key,mysql"}}}
WARM = "## The first stack with warm caches"
SECOND = "## The second up, step by step (elapsed time as its progress said)"
STEP = re.compile(r"^\s*(\d+):(\d\d) (.*)$")


def token(lab: str) -> bool:
    """Keystone in the lab's machine issues a token for admin with `labctl creds`' password."""
    creds = json.loads(labctl("creds", "--json", "--lab", lab).stdout)
    ip = json.loads(labctl("status", "--json", "--lab", lab).stdout)["machines"][0]["ip"]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": creds["password"]}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    request = urllib.request.Request(f"http://{ip}/identity/v3/auth/tokens", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as answer:
        return answer.status == 201 and bool(answer.headers.get("X-Subject-Token"))


def up(folder: Path, name: str, *flags: str, preinstall: bool = False) -> tuple[float, list[tuple[float, str]]]:
    """`labctl up` of a new lab in `folder`, to a token: its seconds and its progress lines (seconds, text).
    `preinstall`: the lab boots the DevStack-ready box (devstack.preinstall)."""
    folder.mkdir()
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))  # a TLS-intercepting proxy's CA
    lab = {"name": name, **SETTINGS, **({"ca_certificates": [str(p) for p in cas]} if cas else {})}
    lab["devstack"] = {**SETTINGS["devstack"], "git_base": str(MIRRORS.resolve()),  # type: ignore[dict-item]
                       **({"preinstall": True} if preinstall else {})}
    (folder / "lab.yaml").write_text(json.dumps(lab, indent=2) + "\n")  # JSON is YAML
    started = time.monotonic()
    done = labctl("up", *flags, cwd=folder)
    if not token(name):
        raise SystemExit(f"{name}: Keystone issued no token")
    seconds = time.monotonic() - started
    # Progress goes to stdout (stderr with --json): each line "  M:SS step".
    steps = [(int(m[1]) * 60 + int(m[2]), m[3].strip()) for m in map(STEP.match, done.stdout.splitlines()) if m]
    return seconds, steps


def step_rows(steps: list[tuple[float, str]]) -> str:
    return "\n".join(f"| {minutes(s)} | {t[:110].replace('|', '/')} |" for s, t in steps
                     if not t.startswith(("warning", "ks: Creating", "ks: Domain", "ks: Uploading")))


def second_section(seconds: float, steps: list[tuple[float, str]], note: str = "") -> str:
    return f"""{SECOND}
{note}
| at | step |
| --- | --- |
{step_rows(steps)}
| {minutes(seconds)} | Keystone issued a token (the bench's own request from the host) |

"""


def box_seconds(steps: list[tuple[float, str]]) -> float | None:
    """How long `up` built a DevStack-ready box, from its progress (None: it built none)."""
    began = next((s for s, t in steps if t.startswith("building box")), None)
    added = next((s for s, t in steps if t.startswith("adding box")), None)
    return added - began if began is not None and added is not None else None


def warm_stack(folder: Path, name: str, preinstall: bool = False) -> str:
    """A lab of the same settings stacked afresh through warm caches: its section of the results.
    `preinstall`: on the DevStack-ready box (its packages and virtualenv in it; built once, timed apart)."""
    try:
        warm_s, steps = up(folder, name, "--fresh", preinstall=preinstall)
        warm = json.loads(labctl("status", "--json", "--lab", name).stdout)["machines"][0]
        phases = [(p["phase"], p["seconds"]) for p in warm["devstack_phases"]]
    finally:
        labctl("destroy", "-y", "--lab", name, check=False)
    stack = sum(s for _, s in phases)
    phase_rows = "\n".join(f"| {phase} | {minutes(s)} |" for phase, s in phases)
    box = box_seconds(steps)
    boxed = ("" if not preinstall else
             " On the DevStack-ready box (`devstack.preinstall: true`: DevStack's packages and virtualenv in it),"
             + (f" which this up built first in {minutes(box)} (once; a later lab boots it as it is):"
                f" {minutes(warm_s - box)} without that." if box is not None else " built by an earlier up."))
    return f"""{WARM}

A lab of the same settings, `labctl up --fresh` (stack.sh runs although the image exists), its
packages and wheels from the host's caches, filled by an earlier up: {minutes(warm_s)} from the command's
start to a token.{boxed} Against the 26m21s of `bench/results/devstack.md` (cold, with ksmtuned, every
`openstack` call a new client): {warm_s / (26 * 60 + 21):.2f}. Its phases as `labctl status` keeps them
(measured {time.strftime('%Y-%m-%d %H:%M %Z')}):

| phase | time |
| --- | --- |
{phase_rows}
| stack.sh in all | {minutes(stack)} |

"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the image (labctl images rm removes it)")
    parser.add_argument("--warm-only", action="store_true",
                        help="only stack a lab through the (warm) caches again, replacing that section of the results")
    parser.add_argument("--second-only", action="store_true",
                        help="only make a lab from the image an earlier run kept (--keep), replacing its section")
    parser.add_argument("--preinstall", action="store_true",
                        help="the warm stack boots the DevStack-ready box (devstack.preinstall), built if need be")
    parser.add_argument("--no-warm", action="store_true",
                        help="the first and second up only: the warm-cache section of the results is kept as it was")
    args = parser.parse_args()
    tag = os.getpid()
    out = RESULTS / "second-up.md"
    if args.second_only:
        text = out.read_text()
        head, rest = text.split(SECOND, 1)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                seconds, steps = up(Path(tmp) / f"second-{tag}", f"second-{tag}")
            finally:
                labctl("destroy", "-y", "--lab", f"second-{tag}", check=False)
        if not any("made from stacked image" in t for _, t in steps):
            sys.exit("the lab was not made from an image: keep one first (bench/second_up.py --keep)")
        note = (f"\nAgain on {time.strftime('%Y-%m-%d %H:%M %Z')} (`--second-only`, from the image kept before):"
                f" {minutes(seconds)} from the command's start to a token.\n")
        out.write_text(head + second_section(seconds, steps, note) + rest[rest.index(WARM):])
        print(out.read_text())
        return
    if args.warm_only:
        text = out.read_text()
        head, rest = text.split(WARM, 1)
        with tempfile.TemporaryDirectory() as tmp:
            section = warm_stack(Path(tmp) / f"warm-{tag}", f"warm-{tag}", args.preinstall)
        out.write_text(head + section + rest[rest.index("## Machine"):])
        print(out.read_text())
        return
    names = [f"first-{tag}", f"second-{tag}", f"warm-{tag}"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            first_s, first_steps = up(Path(tmp) / names[0], names[0])
            second_s, second_steps = up(Path(tmp) / names[1], names[1])
        finally:
            for name in names[:2]:  # three 8 GiB machines at once would not fit beside the host
                labctl("destroy", "-y", "--lab", name, check=False)
        if args.no_warm:  # the earlier warm section, which says when it was measured
            text = out.read_text()
            warm = text[text.index(WARM):text.index("## Machine")]
        else:
            warm = warm_stack(Path(tmp) / names[2], names[2], args.preinstall)
    images = json.loads(labctl("images", "--json").stdout)["images"]
    if not args.keep:  # the first lab's image, replaced by the warm lab's (same stack)
        for made in (i for i in images if i["lab"] in names):
            labctl("images", "rm", made["digest"], check=False)
    kept = [(s, t) for s, t in first_steps if re.match(r"\S+: (keeping its stacked disk|kept as image)", t)]
    out.write_text(f"""# The second `labctl up`: from a stacked image

Keystone-only DevStack master (`ENABLED_SERVICES=key,mysql`) from ../shared/mirrors in one Debian 12 VM
(8 GiB, 2 vCPUs), each `labctl up` timed from the command's start to Keystone issuing a token with
`labctl creds`' password.

| | time |
| --- | --- |
| first `labctl up` (box boot, stack.sh, its disk kept as an image) | {minutes(first_s)} |
| second `labctl up` (another lab, the same settings: made from the image) | {minutes(second_s)} |
| second / first | {second_s / first_s:.2f} (1/{first_s / second_s:.1f}) |

Keeping the image, in the first up: {"; ".join(f"{minutes(s)} {t[:90]}" for s, t in kept) or "not reported"}.

{second_section(second_s, second_steps)}{warm}## Machine
{describe()}
""")
    print(out.read_text())


if __name__ == "__main__":
    main()
