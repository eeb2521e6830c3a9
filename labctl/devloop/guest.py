"""What runs inside a stacked machine, as root, for `labctl sync PROJECT`. Pure text: uploaded and run
by labctl.devloop.sync with a JSON spec of mode 0600 that it deletes at once (labctl.cloud.dayone's
way). Each step is one JSON line on stdout, as the day-one script's.

In DevStack's checkout of the project (/opt/stack/PROJECT, the stack user's), it fetches the commit
labctl serves (the developer's working tree), checks it out, reinstalls the project into DevStack's
Python only when its requirements or entry points changed (requirements.txt, setup.cfg, setup.py,
pyproject.toml), and restarts the project's DevStack services (systemd's devstack@SERVICE units),
waiting for each to run. A service that does not come back is named with its journal's last lines,
and the previous commit is checked out, reinstalled and restarted again: the previous code keeps
running. Exit 3 when something failed.
"""

SYNC_SCRIPT = r'''
import json, os, subprocess, sys, time

spec = json.load(open(sys.argv[1]))
os.unlink(sys.argv[1])
DIR = spec["dir"]
TIMEOUT = float(spec.get("timeout", 180))
REINSTALL = {"requirements.txt", "setup.cfg", "setup.py", "pyproject.toml"}


def say(name, state, detail=""):
    print(json.dumps({"kind": "sync", "name": name, "state": state, "detail": detail[-600:]}), flush=True)


class Failed(Exception):
    pass


def as_stack(*argv, timeout=900):
    return subprocess.run(["sudo", "-u", "stack", "-H", *argv], capture_output=True, text=True, timeout=timeout)


def git(*args):
    proc = as_stack("git", "-C", DIR, *args)
    if proc.returncode != 0:
        raise Failed(f"git {args[0]}: " + (proc.stderr.strip().splitlines() or ["failed"])[-1])
    return proc.stdout.strip()


def units():
    proc = subprocess.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--type=service",
                           "devstack@*"], capture_output=True, text=True)
    found = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return [u for u in found if any(u[len("devstack@"):].startswith(p) for p in spec["prefixes"])] \
        + list(spec.get("units", []))


def install():
    pip = os.path.join(spec["venv"], "bin", "pip")
    argv = [pip if os.path.exists(pip) else "pip", "install", "-q"]
    if os.path.exists(spec["constraints"]):
        argv += ["-c", spec["constraints"]]
    proc = as_stack(*argv, "-e", DIR)
    if proc.returncode != 0:
        raise Failed("pip install: " + (proc.stderr.strip().splitlines() or ["failed"])[-1])


def journal(unit):
    proc = subprocess.run(["journalctl", "-u", unit, "-n", "8", "--no-pager", "-o", "cat"], capture_output=True,
                          text=True)
    return " | ".join(line.strip() for line in proc.stdout.splitlines() if line.strip())


def restart(names):
    """Every unit restarted (systemctl waits for each start job), then given a few seconds: those not
    running then (failed, or still starting after TIMEOUT), with their journal's last lines."""
    try:
        subprocess.run(["systemctl", "restart", *names], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    time.sleep(5)  # a service that dies as it starts
    states = {u: subprocess.run(["systemctl", "is-active", u], capture_output=True, text=True).stdout.strip()
              for u in names}
    return {u: f"{state}: {journal(u)}" for u, state in states.items() if state != "active"}


def changed_between(old, new):
    return set(git("diff", "--name-only", old, new).split())


if not os.path.isdir(os.path.join(DIR, ".git")):
    say("code", "present", f"no {DIR} here: the project is not stacked on this machine")
    sys.exit(0)
try:
    old = git("rev-parse", "HEAD")
    git("fetch", "-q", spec["url"], spec["branch"])
    new = git("rev-parse", "FETCH_HEAD")
except Failed as exc:
    say("code", "failed", str(exc))
    sys.exit(3)
if old == new:
    say("code", "present", f"already at {new[:12]}")
    sys.exit(0)
changed = changed_between(old, new)
if not changed:
    git("checkout", "-q", "-f", "--detach", new)
    say("code", "present", f"no file changed ({new[:12]})")
    sys.exit(0)
reinstall = bool(changed & REINSTALL)
services = units()
try:
    git("checkout", "-q", "-f", "--detach", new)
    say("code", "replaced", f"{old[:12]} -> {new[:12]}, {len(changed)} file(s)")
    if reinstall:
        install()
        say("install", "replaced", "requirements or entry points changed: reinstalled")
except Failed as exc:
    say("code", "failed", str(exc))
    dead = {"(none restarted)": ""}
else:
    dead = restart(services) if services else {}
    for unit in services:
        if unit not in dead:
            say(f"service {unit}", "ok", "restarted")
if not dead:
    sys.exit(0)
for unit, words in dead.items():
    if unit != "(none restarted)":
        say(f"service {unit}", "failed", words)
try:  # the previous code, running again
    git("checkout", "-q", "-f", "--detach", old)
    if reinstall:
        install()
    back = restart(services) if services else {}
    say("rollback", "failed" if back else "replaced",
        f"back at {old[:12]}" + (": " + "; ".join(back) + " did not come back" if back else ": the previous code runs"))
except Failed as exc:
    say("rollback", "failed", str(exc))
sys.exit(3)
'''
