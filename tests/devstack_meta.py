"""Read a local.conf the way DevStack does, to check what each machine will really get.

An independent re-implementation of the semantics of DevStack's inc/meta-config (the awk in
get_meta_section, get_meta_section_files and merge_config_file) and of how stack.sh sources the
extracted localrc: the localrc is run by the real bash.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

_HEADER = re.compile(r"^\[\[.+\|.*\]\]")


def _header(line: str) -> tuple[str, str] | None:
    if not _HEADER.match(line):
        return None
    first = line.split()[0] if line.split() else ""
    group, _, file = first.replace("[", "").replace("]", "").partition("|")
    return group, file.split("|")[0]


def meta_section_files(text: str, group: str) -> list[str]:
    return [h[1] for line in text.splitlines() if (h := _header(line)) and h[0] == group]


def meta_section(text: str, group: str, file: str) -> list[str]:
    out: list[str] = []
    active = False
    for line in text.splitlines():
        header = _header(line)
        if header:
            active = header == (group, file)
            continue
        if active:
            out.append(line)
    return out


def merged_ini(text: str, group: str, file: str) -> dict[str, dict[str, list[str]]]:
    """section -> option -> values, as merge_config_file's iniset/iniadd calls would leave them."""
    result: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in meta_section(text, group, file):
        if re.match(r"^\[.+\]", line):
            section = line.split()[0].replace("[", "").replace("]", "")
            continue
        if re.match(r"^ *#", line) or not re.match(r"^[^ \t]+", line):
            continue
        attr, _, value = line.partition("=")
        result.setdefault(section, {}).setdefault(attr.rstrip(" \t"), []).append(value.strip(" \t"))
    return result


def _vars_and_calls(output: str) -> tuple[dict[str, str], list[str]]:
    """The "var NAME=VALUE" and "call TEXT" lines the reading scripts print."""
    variables: dict[str, str] = {}
    calls: list[str] = []
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "var":
            name, _, value = rest.partition("=")
            variables[name] = value
        elif kind == "call":
            calls.append(rest)
    return variables, calls


def localrc_env(text: str, tmp: Path) -> tuple[dict[str, str], list[str]]:
    """Source the [[local|localrc]] section in bash, as stack.sh does via .localrc.auto.

    Returns the variables it set and the DevStack functions it called (enable_service ...)."""
    auto = tmp / ".localrc.auto"
    auto.write_text("# Generated file, do not edit\n" + "\n".join(meta_section(text, "local", "localrc")) + "\n")
    script = (
        'calls=(); for f in enable_service disable_service enable_plugin; do '
        'eval "$f() { calls+=(\\"$f \\$*\\"); }"; done\n'
        'before=$(compgen -v)\n'
        f'source {auto}\n'
        'for v in $(compgen -v); do case $v in before|calls|v|f|BASH_*|FUNCNAME|_) continue;; esac\n'
        '  grep -qx "$v" <<<"$before" || printf "var %s=%s\\n" "$v" "${!v}"; done\n'
        'for c in "${calls[@]}"; do printf "call %s\\n" "$c"; done\n'
    )
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                          text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return _vars_and_calls(proc.stdout)


# What DevStack itself runs, from its real source (../shared/mirrors): the reading of local.conf by
# inc/meta-config's own functions, and the localrc sourced as stack.sh sources it.
DEVSTACK_READS = r"""
set +u
cd "$1"
die() { echo "die: $*" >&2; exit 1; }
warn() { echo "warn: $*" >&2; }
source "$2/inc/ini-config"
source "$2/inc/meta-config"
extract_localrc_section "$1/local.conf" "$1/localrc" "$1/.localrc.auto"
calls=()
enable_service() { calls+=("enable_service $*"); }
disable_service() { calls+=("disable_service $*"); }
enable_plugin() { calls+=("enable_plugin $*"); }
before=$(compgen -v)
source "$1/.localrc.auto"
for v in $(compgen -v); do case $v in before|calls|v|BASH_*|FUNCNAME|_) continue;; esac
  grep -qx "$v" <<<"$before" || printf 'var %s=%s\n' "$v" "${!v}"; done
for c in "${calls[@]+"${calls[@]}"}"; do printf 'call %s\n' "$c"; done
STACK_USER=$(id -un)
for f in $(get_meta_section_files "$1/local.conf" post-config); do
  case $f in \$*) name=${f#\$}; name=${name#\{}; name=${name%\}}; printf -v "$name" '%s' "$1/post-config-$name";; esac
done
merge_config_group "$1/local.conf" post-config
"""


def devstack_source(tmp: Path) -> Path:
    """DevStack's inc/ folder at master, from ../shared/mirrors (skip where it is not there)."""
    import pytest

    from conftest import REPO
    from labctl.gitserver import prepare
    from labctl.mirrors import Served

    mirrors = REPO.parent / "shared" / "mirrors"
    if not (mirrors / "openstack" / "devstack.git").is_dir():
        pytest.skip(f"{mirrors} is not there")
    copy = prepare(Served(mirrors, "mirrors", True), tmp / "mirror-copy")
    out = tmp / "devstack"
    (out / "inc").mkdir(parents=True)
    for name in ("inc/meta-config", "inc/ini-config", "functions-common"):
        text = subprocess.run(["git", "--git-dir", str(copy / "openstack" / "devstack.git"), "show", f"master:{name}"],
                              capture_output=True, text=True, check=True).stdout
        (out / name).write_text(text)
    return out


def devstack_reads(local_conf: str, devstack: Path, work: Path) -> tuple[dict[str, str], list[str], str]:
    """local.conf read by DevStack's own inc/meta-config in `work`: its localrc variables, the DevStack
    functions it called, and every post-config file it wrote, concatenated."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "local.conf").write_text(local_conf)
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", DEVSTACK_READS, "reads", str(work), str(devstack)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
                          cwd=work, timeout=60)
    assert proc.returncode == 0, proc.stderr
    variables, calls = _vars_and_calls(proc.stdout)
    written = "".join(p.read_text() for p in sorted(work.glob("post-config-*")))
    return variables, calls, written


def devstack_services(local_conf: str, devstack: Path, work: Path) -> list[str]:
    """ENABLED_SERVICES as stackrc leaves it: its default list, then local.conf's localrc sourced with
    DevStack's own enable_service and disable_service (functions-common)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "local.conf").write_text(local_conf)
    script = r"""
set +u
cd "$1"
TOP_DIR="$2"
source "$2/inc/meta-config"
source "$2/functions-common" >/dev/null 2>&1
extract_localrc_section "$1/local.conf" "$1/localrc" "$1/.localrc.auto"
ENABLED_SERVICES=${ENABLED_SERVICES-key,n-api,g-api,q-svc,horizon}  # stackrc's default, shortened
source "$1/.localrc.auto"
echo "$ENABLED_SERVICES"
"""
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "services", str(work), str(devstack)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
                          cwd=work, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [s for s in proc.stdout.strip().split(",") if s]
