"""What runs inside every seat of a cloned classroom, as root, to make its copy of the template its
own seat. Pure text: the script is uploaded and run by labctl.stacking.clone; its values come in a
JSON file of mode 0600 that it deletes at once (secrets never on a command line).

Every seat starts as an exact copy of the template's stacked disk: seat-01's name, address, SSH
host keys and machine-id, Keystone's token keys, and the *template's* passwords (seat-01 stacked
with passwords of no seat, so that no seat's own secret is ever on the shared base, not even in its
free blocks). Each of those is replaced here, DevStack's services stopped meanwhile:
- the hostname (/etc/hostname, /etc/hosts) and labctl's key for the login user (the machine-id is
  the seat's own already: labctl.stacking.clone's unit put it back before the network started);
- the seat's own address: on its interface, and in every file under /etc and DevStack's own files
  (.stackenv, .localrc.auto, local.conf, clouds.yaml, its logs...), then in Keystone's catalog;
- the seat's own passwords: in those files, MySQL's (ALTER USER), in Nova's cell mappings (their
  RabbitMQ and database URLs, rows of nova_api), RabbitMQ's when it runs, and the OpenStack users'
  through Keystone's API (a user whose password was the template's admin or
  service password gets this seat's);
- secrets no password list holds, made anew: Keystone's fernet and credential keys, RabbitMQ's
  Erlang cookie, Horizon's secret key, the SSH host keys (last; labctl forgets the old key);
- then the seat's files are searched for every secret of every other seat: one found fails the seat.
It ends by asking Keystone for a token with the new admin password, and with the template's (refused).
"""

FIXUP_SCRIPT = r'''
import json, os, re, shutil, subprocess, sys, time, urllib.error, urllib.request

spec = json.load(open(sys.argv[1]))
os.unlink(sys.argv[1])
old_ip, new_ip = spec["old_ip"], spec["new_ip"]
pairs = [(old, new) for old, new in spec["secrets"] if old and old != new]


def sh(*argv, check=True, **kw):
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])} failed ({proc.returncode}): {proc.stdout.strip()[-400:]}")
    return proc.stdout


def say(text):
    print(text, flush=True)


# 1. DevStack's services stop (MySQL stays: its passwords change below): those loaded, and those the
#    copied disk had disabled so that they did not start at its boot (labctl.stacking.identity).
listed = sh("systemctl", "list-units", "devstack@*", "--plain", "--no-legend", "--all").splitlines()
first = [line.split()[0] for line in listed if line.split()]
if os.path.isfile(spec.get("template_units", "")):
    with open(spec["template_units"]) as f:
        first += [u for u in f.read().split() if re.fullmatch(r"devstack@[A-Za-z0-9_.:@-]+", u)]
units = list(dict.fromkeys(u for u in first if u.startswith("devstack@")))
if units:
    sh("systemctl", "stop", *units)
say(f"stopped {len(units)} DevStack services")

# 2. Name and labctl's key.
name = spec["name"]
with open("/etc/hostname", "w") as f:
    f.write(name + "\n")
sh("hostname", name)
with open("/etc/hosts") as f:
    hosts = f.read()
with open("/etc/hosts", "w") as f:
    f.write(re.sub(r"(?<![\w.-])" + re.escape(spec["old_name"]) + r"(?![\w.-])", name, hosts))
home = os.path.expanduser("~" + spec["login_user"])
keys = os.path.join(home, ".ssh", "authorized_keys")
with open(keys, "w") as f:
    f.write(spec["authorized_key"].strip() + "\n")
say("name and key set")
# A seat made later from the base (labctl.stacking.remake) boots with the template's machine-id: its own back.
wanted_id = spec.get("machine_id") or ""
if re.fullmatch(r"[0-9a-f]{32}", wanted_id):
    with open("/etc/machine-id") as f:
        if f.read().strip() != wanted_id:
            with open("/etc/machine-id", "w") as out:
                out.write(wanted_id + "\n")
            say("machine-id set")

# 3. The address on its interface.
ip_re = re.compile(r"(?<![\d.])" + re.escape(old_ip) + r"(?![\d])")
for line in (sh("ip", "-o", "-4", "addr", "show") if old_ip != new_ip else "").splitlines():
    fields = line.split()
    if "inet" in fields:
        addr = fields[fields.index("inet") + 1]
        if addr.split("/")[0] == old_ip:
            prefix = addr.split("/")[1]
            sh("ip", "addr", "add", f"{new_ip}/{prefix}", "dev", fields[1])
            sh("ip", "addr", "del", addr, "dev", fields[1])
            say(f"{fields[1]}: {old_ip} -> {new_ip}")

# 4. Every file DevStack (or the box) wrote the address or a password in.
ROOTS = ["/etc", "/opt/stack/devstack/.stackenv", "/opt/stack/devstack/.localrc.auto",
         "/opt/stack/devstack/local.conf", "/opt/stack/logs", "/opt/stack/.config", "/root/.config",
         "/opt/stack/.my.cnf", "/root/.my.cnf", "/opt/stack/horizon/openstack_dashboard/local"]
BIG_ROOTS = ("/opt/stack/logs/",)  # stack.sh's xtrace log runs to tens of MB, with every password in it
SKIP = ("/etc/ssh/ssh_host_", "/etc/keystone/fernet-keys", "/etc/keystone/credential-keys", "/etc/ssl/",
        "/etc/alternatives/")
changed = []


def fix(path):
    if path.startswith(SKIP) or os.path.islink(path) or not os.path.isfile(path):
        return
    try:
        if os.path.getsize(path) > (256 if path.startswith(BIG_ROOTS) else 2) * 1024 * 1024:
            return
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return
    new = ip_re.sub(new_ip, text)
    for old, value in pairs:
        new = new.replace(old, value)
    if new != text:
        with open(path, "r+", encoding="utf-8") as f:  # same file: owner and mode stay
            f.write(new)
            f.truncate()
        changed.append(path)


for root in ROOTS:
    if os.path.isfile(root):
        fix(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for filename in filenames:
            fix(os.path.join(dirpath, filename))
say(f"rewrote {len(changed)} files: {' '.join(changed[:40])}")

# 5. MySQL: the database password, then Keystone's catalog and Nova's cells.
def fix_mysql(db_old, db_new, cnf="/root/.labctl-clone.cnf"):
    fd = os.open(cnf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[client]\nuser=root\npassword={db_old}\n")
    try:
        def sql(statement, database=None):  # on stdin: a password in it stays off the command line
            argv = ["mysql", f"--defaults-extra-file={cnf}", "-N", "-B"] + ([database] if database else [])
            return sh(*argv, input=statement + ";\n")

        def quoted(text):
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        for host in sql("SELECT host FROM mysql.user WHERE user='root'").split():
            sql(f"ALTER USER 'root'@{quoted(host)} IDENTIFIED BY {quoted(db_new)}")
        with open(cnf, "w") as f:
            f.write(f"[client]\nuser=root\npassword={db_new}\n")
        databases = sql("SHOW DATABASES").split()
        if "keystone" in databases:
            for a, b in ((f"//{old_ip}/", f"//{new_ip}/"), (f"//{old_ip}:", f"//{new_ip}:")):
                sql(f"UPDATE endpoint SET url=REPLACE(url, '{a}', '{b}')", "keystone")
        if "nova_api" in databases:  # Nova's cells keep RabbitMQ's and MySQL's URLs, passwords in them, in rows
            for a, b in [*pairs, *([(f"@{old_ip}:", f"@{new_ip}:")] if old_ip != new_ip else [])]:
                sql(f"UPDATE cell_mappings SET transport_url=REPLACE(transport_url, {quoted(a)}, {quoted(b)}),"
                    f" database_connection=REPLACE(database_connection, {quoted(a)}, {quoted(b)})", "nova_api")
        say("MySQL: password, Keystone's endpoints" + (" and Nova's cells" if "nova_api" in databases else ""))
    finally:
        os.unlink(cnf)


if shutil.which("mysql") and spec["database"][0]:
    fix_mysql(*spec["database"])
COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
if os.path.isfile(COOKIE):  # every copy's Erlang node would trust every other's: a cookie of its own
    import secrets as _secrets
    import string as _string
    sh("systemctl", "stop", "rabbitmq-server", check=False)
    st = os.stat(COOKIE)
    os.chmod(COOKIE, 0o600)
    with open(COOKIE, "w") as f:
        f.write("".join(_secrets.choice(_string.ascii_uppercase) for _ in range(20)))
    os.chown(COOKIE, st.st_uid, st.st_gid)
    os.chmod(COOKIE, 0o400)
    sh("systemctl", "start", "rabbitmq-server", check=False)
    say("RabbitMQ: an Erlang cookie of its own")
if shutil.which("rabbitmqctl") and spec["rabbit"][0]:  # the password on stdin, never on a command line
    rabbit_pw = spec["rabbit"][1] + "\n"
    sh("rabbitmqctl", "await_startup", "--timeout", "300")
    # A new host name is a new Erlang node (rabbit@seat-02), with a database of its own and no users
    # yet: the user is then made as DevStack makes it (lib/rpc_backend).
    if subprocess.run(["rabbitmqctl", "change_password", "stackrabbit"], input=rabbit_pw, text=True,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        sh("rabbitmqctl", "add_user", "stackrabbit", input=rabbit_pw)
        sh("rabbitmqctl", "set_permissions", "stackrabbit", ".*", ".*", ".*")
    if spec["old_name"] != name:  # the template's node: its database holds the template's password hash
        mnesia, node = "/var/lib/rabbitmq/mnesia", f"rabbit@{spec['old_name']}"
        for entry in os.listdir(mnesia) if os.path.isdir(mnesia) else []:
            if entry == node or entry.startswith((node + "-", node + ".")):
                path = os.path.join(mnesia, entry)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    say("RabbitMQ: this seat's password")
for store in ("/opt/stack/horizon/openstack_dashboard/local/.secret_key_store",):
    if os.path.isfile(store):  # Horizon makes a new one when it starts (below)
        os.unlink(store)
        say("Horizon: its secret key will be made anew")

# The stack user's key that labctl's day-one keypair made on the template (labctl.cloud): every
# copy would hold seat-01's private key. Made anew for this seat by the day-one step that follows.
for leftover in ("/opt/stack/.ssh/id_ed25519", "/opt/stack/.ssh/id_ed25519.pub"):
    if os.path.isfile(leftover):
        os.unlink(leftover)
        say(f"removed the template's {leftover}")

# 6. Keystone's own keys, anew, as `keystone-manage fernet_setup` and `credential_setup` leave them
#    (a staged key 0 and a primary key 1, each a Fernet key: 32 random bytes, urlsafe base64; the
#    folder 0700 and each key 0600, its owner kept), without starting keystone-manage twice (half a
#    minute each under software emulation).
import base64


def new_key_repository(folder):
    st = os.stat(folder)
    fresh = folder + ".labctl-new"
    shutil.rmtree(fresh, ignore_errors=True)
    os.mkdir(fresh, 0o700)
    for index in ("0", "1"):
        fd = os.open(os.path.join(fresh, index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.urlsafe_b64encode(os.urandom(32)))
        os.chown(os.path.join(fresh, index), st.st_uid, st.st_gid)
    os.chown(fresh, st.st_uid, st.st_gid)
    shutil.rmtree(folder)
    os.rename(fresh, folder)


made = [sub for sub in ("fernet-keys", "credential-keys") if os.path.isdir(f"/etc/keystone/{sub}")]
for sub in made:
    new_key_repository(f"/etc/keystone/{sub}")
if made:
    say(f"Keystone's {' and '.join(made)} made anew")

# 7. Services back, with the new settings.
for service in ("memcached", "apache2", "httpd"):
    found = subprocess.run(["systemctl", "cat", service], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if found.returncode == 0:
        sh("systemctl", "restart", service, check=False)
if units:
    sh("systemctl", "start", *units)
say(f"started {len(units)} DevStack services")


# 8. The OpenStack users' passwords, through Keystone.
REQUEST_TIMEOUT = 60  # one request; Keystone just started may take longer to answer its first ones


def call(method, path, body=None, token=None):
    """(HTTP status, token, body); status 0 when Keystone did not answer (not listening yet, or too
    slow: under software emulation its first requests after a start can take minutes)."""
    request = urllib.request.Request(f"http://{new_ip}/identity/v3{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"X-Auth-Token": token} if token else {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.headers.get("X-Subject-Token"), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None, b""
    except OSError:  # URLError, a refused connection, a timeout
        return 0, None, b""


def first_token(password, wait):
    """A token once Keystone answers, trying for `wait` seconds: (status, token) of the last try."""
    deadline = time.time() + wait
    while True:
        status, token, _ = auth("admin", password)
        if status == 201 or time.time() > deadline:
            return status, token
        time.sleep(3)


def auth(user, password, by_id=False, scoped=True):
    who = {"id": user} if by_id else {"name": user, "domain": {"id": "default"}}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {**who, "password": password}}}}}
    if scoped:
        body["auth"]["scope"] = {"project": {"name": "admin", "domain": {"id": "default"}}}
    return call("POST", "/auth/tokens", body)


admin_old, admin_new = spec["admin"]
service_old, service_new = spec["service"]
if any(u.startswith("devstack@keystone") for u in units):
    status, token = first_token(admin_old, 900)
    if status != 201:
        sys.exit(f"Keystone did not issue a token with the template's admin password within 15 minutes"
                 f" ({f'HTTP {status}' if status else 'no answer'})")
    users = json.loads(call("GET", "/users", token=token)[2])["users"]

    def move(user):
        """1 when the user had a template's password and now has this seat's; an error's words."""
        for old, new in ((admin_old, admin_new), (service_old, service_new)):
            if old and auth(user["id"], old, by_id=True, scoped=False)[0] == 201:
                code = call("PATCH", f"/users/{user['id']}", {"user": {"password": new}}, token)[0]
                return 1 if code == 200 else f"Keystone refused the new password of {user['name']} (HTTP {code})"
        return 0

    # Two at a time (each is two password hashes, seconds under emulation; DevStack runs Keystone's
    # uwsgi with two processes or more); admin last: its new password ends its tokens, this script's.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(move, [u for u in users if u["name"] != "admin"]))
    outcomes += [move(u) for u in users if u["name"] == "admin"]
    refusals = [o for o in outcomes if isinstance(o, str)]
    if refusals:
        sys.exit(refusals[0])
    moved = sum(outcomes)
    own, refused = auth("admin", admin_new)[0], auth("admin", admin_old)[0]
    say(f"Keystone: {moved} users have this seat's passwords; admin token {own}, with the template's {refused}")
    if own != 201 or refused != 401:
        sys.exit("Keystone does not answer with this seat's own admin password alone")

# 9. No secret of another seat anywhere in this seat's files. They come as salted SHA-256 digests,
#    never as values: a value sent here would itself be on this seat's disk and in its memory, which
#    its trainee (root) can read. Every run of 12 or more letters and digits (every labctl password
#    is one) in the places data lives is hashed and compared. The base disk never held another
#    seat's secret (the template): this checks that nothing labctl or DevStack did since brought one.
import hashlib

salt = spec.get("salt", "")
digests = set(spec.get("forbidden_sha256", []))
if digests:
    where = [w for w in ("/etc", "/opt/stack", "/var/lib", "/var/log", "/var/tmp", "/root", "/home", "/srv",
                         "/tmp", "/usr/local/etc") if os.path.isdir(w)]
    # Minutes under software emulation (13 for a real keystone-only seat beside other VMs): said first.
    say(f"looking for the other seats' secrets in its files ({', '.join(where)})")
    grep = subprocess.Popen(["grep", "-roaE", "--devices=skip", "--exclude-dir=venv", "--exclude-dir=site-packages",
                             "--exclude-dir=.git", "--exclude-dir=dist-packages", "--exclude-dir=__pycache__",
                             "[A-Za-z0-9]{12,64}", *where],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, found = set(), set()
    for raw in grep.stdout:
        path, _, token = raw.rstrip(b"\n").rpartition(b":")
        if token in seen:
            continue
        seen.add(token)
        if hashlib.sha256(salt.encode() + token).hexdigest() in digests:
            found.add(path.decode(errors="replace"))
    grep.wait()
    if found:
        sys.exit(f"another seat's secret is in {len(found)} file(s) of this seat: {' '.join(sorted(found)[:10])}")
    say(f"none of the other seats' {len(digests)} secrets is in this seat's files ({len(seen)} words looked at)")

# 10. The unit that made this copy ask DHCP by its MAC has done its work (its drop-in stays).
sh("sh", "-c", spec["undo_template"])

# 11. SSH host keys of its own, last.
for entry in os.listdir("/etc/ssh"):
    if entry.startswith("ssh_host_"):
        os.unlink(os.path.join("/etc/ssh", entry))
sh("ssh-keygen", "-A")
sh("sh", "-c", "systemctl reload ssh 2>/dev/null || systemctl reload sshd")
say("done")
'''
