"""What runs inside a stacked machine, as root, for `labctl sync PROJECT`. Pure text: uploaded and run
by labctl.devloop.sync with a JSON spec of mode 0600 that it deletes at once (labctl.cloud.dayone's
way). Each step is one JSON line on stdout, as the day-one script's.

In DevStack's checkout of the project (/opt/stack/PROJECT, the stack user's), it fetches the commit
labctl serves (the developer's working tree), checks it out, reinstalls the project into DevStack's
Python only when its requirements or entry points changed (requirements.txt, setup.cfg, setup.py,
pyproject.toml), and restarts the project's DevStack services (systemd's devstack@SERVICE units),
waiting for each to run and for the project's API to answer again where it answered before the sync
(a uwsgi service stays "active" when its application fails to import: only a request tells). A
service or API that does not come back is named with its journal's last lines, and the previous
commit is checked out, reinstalled and restarted again: the previous code keeps running. Exit 3 when
something failed.
"""

# Whether an API answers: PROBE is part of SYNC_SCRIPT, and runs alone in the tests against real HTTP servers.
PROBE = r'''
import time, urllib.error, urllib.request


def answer(url):
    """The HTTP status a GET of url gets (straight, never through a proxy), or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as got:
            return got.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def serves(url, deadline, pause=2.0, errors_needed=3):
    """(True, words) once url answers below 500, before `deadline` (time.monotonic()). A server that
    answers 500 `errors_needed` times in a row runs without its application (uwsgi whose application
    failed to import answers every request so) and fails at once; one that does not answer yet
    (refused, 502, 503: still starting) is waited for."""
    errors = 0
    while True:
        status = answer(url)
        if status is not None and status < 500:
            return True, f"{url} answers {status}"
        errors = errors + 1 if status == 500 else 0
        if errors >= errors_needed or time.monotonic() >= deadline:
            return False, f"{url} answers {status or 'nothing'}"
        time.sleep(pause)
'''

SYNC_SCRIPT = PROBE + r'''
import json, os, subprocess, sys

spec = json.load(open(sys.argv[1]))
os.unlink(sys.argv[1])
DIR = spec["dir"]
TIMEOUT = float(spec.get("timeout", 180))
REINSTALL = {"requirements.txt", "setup.cfg", "setup.py", "pyproject.toml"}


def say(name, state, detail=""):
    print(json.dumps({"kind": "sync", "name": name, "state": state, "detail": detail[-900:]}), flush=True)


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


def journal(unit, since):
    """What the unit logged since `since` (time.time()): its last lines, shortened, then the last error
    it logged (a traceback's last line), kept whole at the end (say() keeps a detail's end)."""
    argv = ["journalctl", "-u", unit, "--no-pager", "-o", "cat", "--since", f"@{int(since)}"]
    lines = [line.strip() for line in subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
             if line.strip()]
    errors = [line for line in lines if "Error:" in line or "Exception:" in line][-1:]
    return " | ".join([line[:100] for line in lines[-6:] if line not in errors] + errors)


def restart(names):
    """Every unit restarted (systemctl waits for each start job), then given a few seconds: those not
    running then (failed, or still starting after TIMEOUT), with their journal's last lines; then each
    API that answered before the sync must answer again (within TIMEOUT)."""
    began = time.time()
    try:
        subprocess.run(["systemctl", "restart", *names], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    time.sleep(5)  # a service that dies as it starts
    states = {u: subprocess.run(["systemctl", "is-active", u], capture_output=True, text=True).stdout.strip()
              for u in names}
    dead = {u: f"{state}: {journal(u, began)}" for u, state in states.items() if state != "active"}
    deadline = time.monotonic() + TIMEOUT
    for url in [] if dead else APIS:
        ok, words = serves(url, deadline)
        if not ok:
            dead[f"api {url}"] = words + ": " + " / ".join(journal(u, began) for u in names)
    return dead


def changed_between(old, new):
    return set(git("diff", "--name-only", old, new).split())


# The project's APIs that answer now (before the sync): each must answer after it too.
APIS = [url for url in spec.get("apis", []) if (answer(url) or 500) < 500]
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
    for url in APIS:
        if f"api {url}" not in dead and not any(u in dead for u in services):
            say(f"api {url}", "ok", "answers again")
if not dead:
    sys.exit(0)
for unit, words in dead.items():
    if unit != "(none restarted)":
        say(unit if unit.startswith("api ") else f"service {unit}", "failed", words)
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
