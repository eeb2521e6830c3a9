"""What runs inside a stacked machine, as root, to make lab.yaml's day-one resources (labctl.cloud.spec).
Pure text: uploaded and run by labctl.cloud.dayone with a JSON file of mode 0600 that it deletes at once.

Every value reaches `openstack` as one argument of an argv list (no shell), with the admin credentials
of DevStack's own openrc. Each resource is one JSON line on stdout: created, present (nothing to do),
replaced, or failed with OpenStack's own words; one failure never stops the others. Idempotent: a
retry makes only what is missing, and an image left half-made by an earlier try (queued, saving,
killed) is deleted and made anew. Exit 3 when a resource failed.
"""

# Both scripts start so: the spec read and deleted, DevStack's admin credentials, `openstack` as argv.
PRELUDE = r'''
import json, os, shutil, subprocess, sys, tempfile

spec = json.load(open(sys.argv[1]))
os.unlink(sys.argv[1])
DEVSTACK = spec.get("devstack", "/opt/stack/devstack")
STACK_HOME = spec.get("stack_home", "/opt/stack")
failed = 0


def say(kind, name, state, detail=""):
    global failed
    failed += state == "failed"
    print(json.dumps({"kind": kind, "name": name, "state": state, "detail": detail[-600:]}), flush=True)


class Failed(Exception):
    pass


def openrc(user, project):
    proc = subprocess.run(["sudo", "-u", "stack", "-H", "bash", "-c",
                           'cd "$1" && . ./openrc "$2" "$3" >/dev/null 2>&1 && env -0', "openrc",
                           DEVSTACK, user, project], capture_output=True, timeout=300)
    if proc.returncode != 0:
        return None
    return dict(kv.split("=", 1) for kv in proc.stdout.decode(errors="replace").split("\0") if "=" in kv)


ENV = openrc("admin", "admin")
if ENV is not None and "OS_AUTH_URL" not in ENV:
    ENV = None
NO_CREDENTIALS = f"{DEVSTACK}/openrc admin admin gave no credentials: has DevStack stacked?"


def osc(*args, as_json=True, check=True):
    argv = ["openstack", *args, *(["-f", "json"] if as_json else [])]
    try:
        proc = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise Failed("no openstack client in the machine (DevStack installs python-openstackclient)") from None
    if proc.returncode != 0:
        if check:
            words = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
            raise Failed(f"openstack {' '.join(args[:2])}: {words[-1]}")
        return None
    return json.loads(proc.stdout) if as_json and proc.stdout.strip() else proc.stdout


'''

DAY_ONE_SCRIPT = PRELUDE + r'''
if ENV is None:
    say("cloud", "openrc", "failed", NO_CREDENTIALS)
    sys.exit(3)

# Images, in order: a kernel or ramdisk named by a later image is made first.
ids = {}
work = tempfile.mkdtemp(prefix="labctl-images-", dir="/var/tmp")
try:
    for image in spec["images"]:
        name = image["name"]
        try:
            found = osc("image", "list", "--name", name)
            half = [f for f in found if f["Status"] != "active"]
            for f in half:  # left by a try that stopped while uploading
                osc("image", "delete", f["ID"], as_json=False)
            active = [f for f in found if f["Status"] == "active"]
            if active:
                ids[name] = active[0]["ID"]
                say("image", name, "present")
                continue
            path = image["file"]
            if not path:
                path = os.path.join(work, "download")
                fetch = subprocess.run(["curl", "-fsSL", "--retry", "2", "--max-time", "3600", "-o", path,
                                        image["url"]], capture_output=True, text=True)
                if fetch.returncode != 0:
                    raise Failed(f"cannot fetch {image['url']}: {fetch.stderr.strip()[-300:]}")
            argv = ["image", "create", name, "--file", path, "--disk-format", image["disk_format"],
                    "--container-format", image["container_format"], "--public"]
            for key in ("kernel", "ramdisk"):
                if image[key]:
                    if image[key] not in ids:
                        raise Failed(f"its {key} image {image[key]} was not made")
                    argv += ["--property", f"{key}_id={ids[image[key]]}"]
            for key, value in image["properties"].items():
                argv += ["--property", f"{key}={value}"]
            try:
                made = osc(*argv)
            except Failed:
                for f in osc("image", "list", "--name", name, check=False) or []:
                    if f["Status"] != "active":  # nothing half-made is left behind
                        osc("image", "delete", f["ID"], as_json=False, check=False)
                raise
            ids[name] = made["id"]
            say("image", name, "replaced" if half else "created")
        except Failed as exc:
            say("image", name, "failed", str(exc))
        finally:
            if image["file"] and os.path.exists(image["file"]):
                os.unlink(image["file"])
            if os.path.exists(os.path.join(work, "download")):
                os.unlink(os.path.join(work, "download"))
finally:
    shutil.rmtree(work, ignore_errors=True)

for flavor in spec["flavors"]:
    name, want = flavor["name"], (flavor["ram"], flavor["disk"], flavor["vcpus"])
    try:
        have = osc("flavor", "show", name, check=False)
        if have:
            got = (have["ram"], have["disk"], have["vcpus"])
            if got == want:
                say("flavor", name, "present")
            else:
                raise Failed(f"exists with ram {got[0]} MiB, disk {got[1]} GB, {got[2]} vCPUs where lab.yaml says"
                             f" {want[0]}, {want[1]}, {want[2]}: delete it (openstack flavor delete {name}) or"
                             " rename it in lab.yaml")
        else:
            osc("flavor", "create", name, "--ram", str(want[0]), "--disk", str(want[1]), "--vcpus", str(want[2]),
                "--public")
            say("flavor", name, "created")
    except Failed as exc:
        say("flavor", name, "failed", str(exc))

keypair = spec["keypair"]
if keypair:
    name, public = keypair["name"], keypair["public_key"]
    try:
        own = public is None
        if own:  # the stack user's own key, so that servers are reached from inside the machine
            key = f"{STACK_HOME}/.ssh/id_ed25519"
            if not os.path.isfile(key + ".pub"):
                subprocess.run(["sudo", "-u", "stack", "-H", "mkdir", "-p", "-m", "700", f"{STACK_HOME}/.ssh"],
                               check=True)
                subprocess.run(["sudo", "-u", "stack", "-H", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key,
                                "-C", f"stack@{os.uname().nodename}"], check=True, capture_output=True)
            public = open(key + ".pub").read().strip()
        have = osc("keypair", "show", "--public-key", name, as_json=False, check=False)
        if have is not None and have.split()[:2] == public.split()[:2]:
            say("keypair", name, "present")
        elif have is not None and not own:
            raise Failed(f"exists with another public key: delete it (openstack keypair delete {name}) or rename"
                         " it in lab.yaml")
        else:
            if have is not None:  # labctl's own, from a machine this one was copied from
                osc("keypair", "delete", name, as_json=False)
            with tempfile.NamedTemporaryFile("w", suffix=".pub") as f:
                f.write(public + "\n")
                f.flush()
                osc("keypair", "create", "--public-key", f.name, name)
            say("keypair", name, "replaced" if have is not None else "created")
    except (Failed, OSError, subprocess.CalledProcessError) as exc:
        say("keypair", name, "failed", str(exc))

if spec["rules"]:
    projects = [p for p in ("admin", "demo") if osc("project", "show", p, check=False)]
    for project in projects:
        try:
            pid = osc("project", "show", project)["id"]
            groups = [g for g in osc("security", "group", "list", "--project", pid) if g["Name"] == "default"]
            if not groups:
                raise Failed(f"project {project} has no default security group")
            gid = groups[0]["ID"]
            rules = osc("security", "group", "rule", "list", gid)
        except Failed as exc:
            say("rule", project, "failed", str(exc))
            continue
        for rule in spec["rules"]:
            proto, port = rule["protocol"], rule["port"]
            label = f"{project}/default {proto}" + (f"/{port}" if port else "")
            span = f"{port}:{port}" if port else ""
            if any(r.get("IP Protocol") == proto and r.get("Direction") == "ingress" and r.get("Ethertype") == "IPv4"
                   and (r.get("Port Range") or "") == span and r.get("IP Range") in ("0.0.0.0/0", None)
                   for r in rules):
                say("rule", label, "present")
                continue
            argv = ["security", "group", "rule", "create", "--ingress", "--ethertype", "IPv4", "--protocol", proto,
                    "--remote-ip", "0.0.0.0/0", *(["--dst-port", str(port)] if port else []), gid]
            try:
                osc(*argv)
                say("rule", label, "created")
            except Failed as exc:
                if "already exists" in str(exc):
                    say("rule", label, "present")
                else:
                    say("rule", label, "failed", str(exc))
sys.exit(3 if failed else 0)
'''

# What `up` shows at its end and `labctl status --health` asks again: each service DevStack enabled
# (as the catalog lists them) answers, and its parts are up. Each check is one line; exit 3 if any failed.
HEALTH_SCRIPT = PRELUDE + r'''

def check(name, state, detail=""):
    say("health", name, state, detail)


if ENV is None:
    check("keystone", "failed", NO_CREDENTIALS)
    sys.exit(3)

import ssl, time, urllib.error, urllib.request

# A machine booted a moment ago (its stacked disk kept as an image, a lab made from one, a resume) starts
# DevStack's services at boot, minutes apart under software emulation: Keystone answers 500 while
# MySQL is not up yet, Nova's services are down until their first report. Until the machine has been
# up SETTLE seconds, a failed check is asked again every EVERY seconds; after that, once.
SETTLE = float(spec.get("settle", 0))
EVERY = float(spec.get("settle_every", 15))


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


class Refused(Failed):
    """An answer no waiting changes (Keystone refusing the password): never asked again, since DevStack's
    Keystone locks an account out after two failed logins."""


def settled(ask):
    while True:
        try:
            return ask()
        except Refused:
            raise
        except Failed:
            if uptime() + EVERY > SETTLE:
                raise
            time.sleep(EVERY)


def token_and_catalog():
    """The admin token asked of Keystone over HTTP, as openrc says, and the catalog's service types that
    come with it: one request where `openstack token issue` and `catalog list` start two clients (half a
    minute each under software emulation). No proxy: Keystone is this machine's own."""
    def domain(prefix):
        if ENV.get(prefix + "_ID"):
            return {"id": ENV[prefix + "_ID"]}
        return {"name": ENV[prefix + "_NAME"]} if ENV.get(prefix + "_NAME") else {"id": "default"}
    url = ENV["OS_AUTH_URL"].rstrip("/")
    url = (url if url.endswith("/v3") else url + "/v3") + "/auth/tokens"
    user = {"name": ENV.get("OS_USERNAME", ""), "password": ENV.get("OS_PASSWORD", ""),
            "domain": domain("OS_USER_DOMAIN")}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                     "scope": {"project": {"name": ENV.get("OS_PROJECT_NAME", ""),
                                           "domain": domain("OS_PROJECT_DOMAIN")}}}}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        # DevStack's tls-proxy serves Keystone over HTTPS with its own CA, which openrc names (OS_CACERT).
        tls = ssl.create_default_context(cafile=ENV.get("OS_CACERT") or None)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls))
        with opener.open(request, timeout=600) as answer:
            catalog = json.loads(answer.read())["token"].get("catalog", [])
    except urllib.error.HTTPError as exc:
        said = f"Keystone answered HTTP {exc.code} {exc.reason} to a token request at {url}"
        raise (Refused(said) if exc.code in (400, 401, 403) else Failed(said)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise Failed(f"no token from Keystone at {url}: {exc}") from None
    return {entry.get("type") for entry in catalog}


try:
    catalog = settled(token_and_catalog)
    check("keystone", "ok", "token issued")
except Failed as exc:
    check("keystone", "failed", str(exc))
    sys.exit(3)


def compute_up():
    services = osc("compute", "service", "list")
    down = [f"{s['Binary']} on {s['Host']}" for s in services if s["State"] != "up" or s["Status"] != "enabled"]
    computes = [s for s in services if s["Binary"] == "nova-compute"]
    if down or not computes:
        raise Failed(("down: " + ", ".join(down)) if down else "no nova-compute service")
    return f"{len(services)} services up, {len(computes)} compute"


def agents_alive():
    agents = osc("network", "agent", "list")
    dead = [f"{a['Agent Type']} on {a['Host']}" for a in agents if a["Alive"] not in (True, ":-)")]
    if dead or not agents:
        raise Failed(("not alive: " + ", ".join(dead)) if dead else "no agent")
    return f"{len(agents)} agents alive"


if "compute" in catalog:
    try:
        check("compute", "ok", settled(compute_up))
    except Failed as exc:
        check("compute", "failed", str(exc))
if "network" in catalog:
    try:
        check("network", "ok", settled(agents_alive))
    except Failed as exc:
        check("network", "failed", str(exc))
if "image" in catalog:
    try:
        check("image", "ok", f"{len(settled(lambda: osc('image', 'list')))} images")
    except Failed as exc:
        check("image", "failed", str(exc))
sys.exit(3 if failed else 0)
'''
