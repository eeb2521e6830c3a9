"""A table of hostile lab folders (issue 10): each is refused by `labctl plan` with one line (exit 2,
nothing written, no traceback, no terminal escape), or rendered harmless as DevStack reads it.

Categories: Ruby (values reaching the Vagrantfile), Jinja (fragments), shell (values DevStack
sources or evaluates), YAML, paths, sizes, encodings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Result
from devstack_meta import localrc_env
from labctl.commands.app import MAX_DETAILS

CANARY = "canary-from-hostile-lab"
BASE = "name: hostile\nmachines:\n  - {name: ks}\n"
ALIAS_BOMB = "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]\n"
                     for i in range(1, 12))


@dataclass(frozen=True)
class Case:
    lab: str  # lab.yaml's text; "{dir}" stands for the lab's folder
    files: dict[str, str | bytes] = field(default_factory=dict)  # more files, relative to the folder
    setup: Callable[[Path], None] | None = None
    harmless: Callable[[Path, str], None] | None = None  # None: must be refused


def localrc(key_values: str) -> str:
    return BASE + f"devstack:\n  localrc: {{{key_values}}}\n"


def fragment(text: str) -> Case:
    return Case(BASE, {"local.conf.d/all.conf": text})


def reads_as(expected: dict[str, str]) -> Callable[[Path, str], None]:
    """The machine's localrc, sourced by bash as stack.sh does, gives exactly these values."""
    def check(folder: Path, conf: str) -> None:
        variables, _ = localrc_env(conf, folder)
        assert {k: variables.get(k) for k in expected} == expected
        assert not list(folder.rglob(f"{CANARY}*"))
    return check


def conf_has(text: str) -> Callable[[Path, str], None]:
    def check(folder: Path, conf: str) -> None:
        assert text in conf
    return check


def link(target: str, name: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(target)
    return make


def fifo(name: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(folder / name)
    return make


def checkout_at(path: Path) -> None:
    (path / ".git").mkdir(parents=True)


def devstack_at(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "stack.sh").write_text("#!/bin/bash\n")


CASES: dict[str, Case] = {
    # --- Ruby: every value that reaches the Vagrantfile
    "ruby-lab-name-quote": Case("name: \"x'; system('touch canary'); '\"\nmachines:\n  - {name: ks}\n"),
    "ruby-lab-name-interp": Case("name: 'x#{`touch canary`}'\nmachines:\n  - {name: ks}\n"),
    "ruby-machine-newline": Case("name: h\nmachines:\n  - {name: \"a\\nsystem('id')\"}\n"),
    "ruby-machine-interp": Case("name: h\nmachines:\n  - {name: 'a#{1}'}\n"),
    "ruby-box-quote": Case("name: h\nmachines:\n  - {name: ks, box: \"evil/box'; `id`; '\"}\n"),
    "ruby-box-newline": Case("name: h\nmachines:\n  - {name: ks, box: \"a/b\\nsystem('id')\"}\n"),
    "ruby-box-interp": Case("name: h\nmachines:\n  - {name: ks, box: 'a/#{`id`}'}\n"),
    "ruby-distro": Case("name: h\nmachines:\n  - {name: ks, distro: \"debian'; `id`\"}\n"),
    "ruby-memory": Case("name: h\nmachines:\n  - {name: ks, memory: \"8G; system('id')\"}\n"),
    "ruby-cpus": Case("name: h\nmachines:\n  - {name: ks, cpus: \"2; `id`\"}\n"),
    "ruby-disk": Case("name: h\nmachines:\n  - {name: ks, disk: \"1e9\"}\n"),
    "ruby-ip": Case("name: h\nnetwork: {cidr: 10.5.0.0/24}\nmachines:\n  - {name: ks, ip: \"10.5.0.9'; `id`\"}\n"),
    "ruby-cidr": Case("name: h\nnetwork: {cidr: \"10.5.0.0/24'; `id`\"}\nmachines:\n  - {name: ks}\n"),
    "ruby-accelerator": Case("name: h\naccelerator: \"kvm'; `id`\"\nmachines:\n  - {name: ks}\n"),
    "ruby-homoglyph-name": Case("name: l\u0430b\nmachines:\n  - {name: ks}\n"),
    "ruby-box-plain": Case("name: h\nmachines:\n  - {name: ks, box: owner/name}\n",
                           harmless=lambda folder, conf: None),
    # --- Jinja: fragments from a stranger
    "jinja-globals": fragment("{{ lab.__init__.__globals__['__builtins__']['__import__']('os').system('id') }}"),
    "jinja-mro": fragment("{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    "jinja-cycler": fragment("{{ cycler.__init__.__globals__.os.system('id') }}"),
    "jinja-joiner": fragment("{{ joiner.__init__.__globals__ }}"),
    "jinja-namespace": fragment("{{ namespace.__init__.__globals__ }}"),
    "jinja-lipsum": fragment("{{ lipsum.__globals__['os'].popen('id').read() }}"),
    "jinja-range-self": fragment("{{ range.__self__ }}"),
    "jinja-attr-filter": fragment("{{ lab|attr('__class__') }}"),
    "jinja-format": fragment("{{ '{0.__class__}'.format(lab) }}"),
    "jinja-format-filter": fragment("{{ '%s'|format(lab.__class__) }}"),
    "jinja-set-class": fragment("{% set x = machine.__class__ %}{{ x }}"),
    "jinja-write": fragment("{{ lab.source.parent.joinpath('x').write_text('owned') }}"),
    "jinja-mutate": fragment("{{ passwords.update({'admin': 'x'}) }}"),
    "jinja-list-append": fragment("{{ lab.machines.append(1) }}"),
    "jinja-include": fragment("{% include '/etc/passwd' %}"),
    "jinja-import": fragment("{% import '/etc/passwd' as p %}"),
    "jinja-from-import": fragment("{% from '/etc/passwd' import x %}"),
    "jinja-extends": fragment("{% extends '/etc/passwd' %}"),
    "jinja-recursion": fragment("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
    "jinja-big-string": fragment("[[local|localrc]]\nX={{ 'x' * 2000000000 }}"),
    "jinja-big-list": fragment("[[local|localrc]]\nX={{ [1] * 2000000000 }}"),
    "jinja-big-power": fragment("[[local|localrc]]\nX={{ 7 ** 999999999 }}"),
    "jinja-big-range": fragment("[[local|localrc]]\n{% for i in range(10**9) %}{% endfor %}"),
    "jinja-long-loop": fragment("[[local|localrc]]\n{% for i in range(100000) %}{% for j in range(100000) %}"
                                "{% endfor %}{% endfor %}"),
    "jinja-big-output": fragment("[[local|localrc]]\n{% for i in range(100000) %}{% for j in range(1000) %}"
                                 "X=1\n{% endfor %}{% endfor %}"),
    "jinja-divide": fragment("[[local|localrc]]\nX={{ 1 / 0 }}"),
    "jinja-undefined": fragment("[[local|localrc]]\nX={{ nothing.here }}"),
    "jinja-syntax": fragment("[[local|localrc]]\nX={{ machine.name "),
    "jinja-sets-password": fragment("[[local|localrc]]\nADMIN_PASSWORD=mine\n"),
    "jinja-exports-host-ip": fragment("[[local|localrc]]\nexport HOST_IP=1.2.3.4\n"),
    "jinja-plain-data": Case(BASE, {"local.conf.d/all.conf": "[[local|localrc]]\nWHO={{ machine.name }}\n"},
                             harmless=conf_has("\nWHO=ks\n")),
    # --- shell: values DevStack sources (localrc) or evaluates (post-config), and what it clones
    "shell-arith-subscript": Case(localrc("A: 'a[$(touch canary-from-hostile-lab-1)]', B: '${HOME:A}'"),
                                  harmless=reads_as({"A": "a[$(touch canary-from-hostile-lab-1)]",
                                                     "B": "${HOME:A}"})),
    "shell-prompt-expansion": Case(localrc("P: '$(touch canary-from-hostile-lab-2)', Q: '${P@P}'"),
                                   harmless=reads_as({"P": "$(touch canary-from-hostile-lab-2)", "Q": "${P@P}"})),
    "shell-old-arith": Case(localrc("R: '$[$(touch canary-from-hostile-lab-3)]'"),
                            harmless=reads_as({"R": "$[$(touch canary-from-hostile-lab-3)]"})),
    "shell-backquote": Case(localrc("S: '`touch canary-from-hostile-lab-4`'"),
                            harmless=reads_as({"S": "`touch canary-from-hostile-lab-4`"})),
    "shell-default-subst": Case(localrc("U: '${X:-$(touch canary-from-hostile-lab-5)}'"),
                                harmless=reads_as({"U": "${X:-$(touch canary-from-hostile-lab-5)}"})),
    "shell-quote-break": Case(localrc("V: '\"; touch canary-from-hostile-lab-6; \"'"),
                              harmless=reads_as({"V": "\"; touch canary-from-hostile-lab-6; \""})),
    "shell-backslash": Case(localrc("W: 'a\\b\\'"), harmless=reads_as({"W": "a\\b\\"})),
    "shell-semicolon": Case(localrc("Y: 'a; touch canary-from-hostile-lab-7'"),
                            harmless=reads_as({"Y": "a; touch canary-from-hostile-lab-7"})),
    "shell-newline": Case(localrc("Z: \"a\\ntouch canary\"")),
    "shell-var-name": Case(localrc("'A;id': x")),
    "shell-var-name-space": Case(localrc("'A B': x")),
    "shell-managed-var": Case(localrc("HOST_IP: 1.2.3.4")),
    "shell-post-config-subst": Case(BASE + "devstack:\n  post_config: {$NOVA_CONF: {DEFAULT: {x: '$(id)'}}}\n"),
    "shell-post-config-quote": Case(BASE + "devstack:\n  post_config: {$NOVA_CONF: {DEFAULT: {x: 'a\"b'}}}\n"),
    "shell-post-config-file": Case(BASE + "devstack:\n  post_config: {'$(id)': {DEFAULT: {x: y}}}\n"),
    "shell-post-config-section": Case(BASE + "devstack:\n  post_config: {$NOVA_CONF: {'a]\\n[b': {x: y}}}\n"),
    "shell-post-config-key": Case(BASE + "devstack:\n  post_config: {$NOVA_CONF: {DEFAULT: {'a b': y}}}\n"),
    "shell-plugin-url": Case(BASE + "devstack:\n  plugins: {evil: 'https://h/x;touch${IFS}canary;#'}\n"),
    "shell-plugin-name": Case(BASE + "devstack:\n  plugins: {'x;id': 'https://h/x'}\n"),
    "shell-plugin-branch": Case(BASE + "devstack:\n  plugins: {x: {url: 'https://h/x', branch: 'a;id'}}\n"),
    "shell-service": Case(BASE + "devstack:\n  enable_services: ['key; id']\n"),
    "shell-branch": Case(BASE + "devstack:\n  branch: 'master;id'\n"),
    "shell-branch-option": Case(BASE + "devstack:\n  branch: '--upload-pack=touch canary'\n"),
    "shell-branch-dotdot": Case(BASE + "devstack:\n  branch: 'a/../b'\n"),
    "shell-repo": Case(BASE + "devstack:\n  repo: 'https://h/x;$(id)'\n"),
    "shell-git-base": Case(BASE + "devstack:\n  git_base: 'https://h/`id`'\n"),
    "shell-proxy": Case(BASE + "proxy: {http: 'http://p:3128;id'}\n"),
    "shell-no-proxy": Case(BASE + "proxy: {http: 'http://p:3128', no_proxy: 'a;id'}\n"),
    # --- YAML
    "yaml-alias-bomb-in-error": Case(ALIAS_BOMB + "name: h\nmachines:\n  - {name: *l11}\n"),
    "yaml-python-tag": Case("name: !!python/object/apply:os.system ['id']\nmachines:\n  - {name: ks}\n"),
    "yaml-binary": Case("name: !!binary aGVsbG8=\nmachines:\n  - {name: ks}\n"),
    "yaml-duplicate-key": Case("name: h\nname: g\nmachines:\n  - {name: ks}\n"),
    "yaml-complex-key": Case("? [a, b]\n: c\nname: h\nmachines:\n  - {name: ks}\n"),
    "yaml-deep-nesting": Case("name: h\nmachines: " + "[" * 5000 + "]" * 5000 + "\n"),
    "yaml-merge-key": Case("base: &b {name: ks}\nname: h\nmachines:\n  - {<<: *b}\n"),
    # Thousands of problems at once: all found, a bounded few lines shown (MAX_DETAILS).
    "yaml-thousands-of-problems": Case("name: h\nmachines:\n" + "".join(
        f"  - {{name: m{i}, memroy: 1, cpus: 0, role: x}}\n" for i in range(2000))),
    "yaml-octal-kept": Case(localrc("MODE: 0755"), harmless=reads_as({"MODE": "0755"})),
    "yaml-float-kept": Case(localrc("VERSION: 23.10"), harmless=reads_as({"VERSION": "23.10"})),
    "yaml-no-kept": Case(localrc("ANSWER: NO"), harmless=reads_as({"ANSWER": "NO"})),
    "yaml-sexagesimal-memory": Case("name: h\nmachines:\n  - {name: ks, memory: 190:20}\n"),
    "yaml-hex-cpus": Case("name: h\nmachines:\n  - {name: ks, cpus: 0x10}\n"),
    "yaml-date-name": Case("name: 2026-01-01\nmachines:\n  - {name: ks}\n"),
    "yaml-tab-indent": Case("name: h\nmachines:\n\t- {name: ks}\n"),
    "yaml-top-list": Case("- name: h\n"),
    "yaml-empty": Case(""),
    "yaml-unclosed": Case("name: h\nmachines: [\n"),
    "yaml-null-byte": Case("name: h\x00\nmachines:\n  - {name: ks}\n"),
    "yaml-escape-in-key": Case("name: h\n\"\\e[2J\\e[31mowned\": 1\nmachines:\n  - {name: ks}\n"),
    "yaml-escape-in-value": Case("name: \"\\e]0;owned\\a\"\nmachines:\n  - {name: ks}\n"),
    # --- paths
    "path-ca-dev-zero": Case(BASE + "ca_certificates: [/dev/zero]\n"),
    "path-ca-fifo": Case(BASE + "ca_certificates: [ca.crt]\n", setup=fifo("ca.crt")),
    "path-ca-nul": Case(BASE + "ca_certificates: [\"a\\0b\"]\n"),
    "path-ca-folder": Case(BASE + "ca_certificates: [/etc]\n"),
    "path-ca-not-pem": Case(BASE + "ca_certificates: [/etc/hostname]\n"),
    "path-ca-missing": Case(BASE + "ca_certificates: [/nonexistent/ca.crt]\n"),
    "path-ca-private-key-only": Case(BASE + "ca_certificates: [k.pem]\n",
                                     {"k.pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
    "path-repo-dev-zero": Case(BASE + "devstack:\n  repo: /dev/zero\n"),
    "path-repo-nul": Case(BASE + "devstack:\n  repo: \"/tmp/a\\0b\"\n"),
    "path-repo-nowhere": Case(BASE + "devstack:\n  repo: ./nowhere\n"),
    "path-git-base-proc": Case(BASE + "devstack:\n  git_base: /proc\n"),
    "path-git-base-root": Case(BASE + "devstack:\n  git_base: /\n"),
    "path-git-base-file": Case(BASE + "devstack:\n  git_base: /etc/hostname\n"),
    "path-fragment-dev-zero": Case(BASE, setup=link("/dev/zero", "local.conf.d/all.conf")),
    "path-fragment-outside": Case(BASE, setup=link("/etc/hostname", "local.conf.d/all.conf")),
    "path-fragment-fifo": Case(BASE, setup=fifo("local.conf.d/all.conf")),
    "path-fragment-folder": Case(BASE, setup=lambda folder: (folder / "local.conf.d" / "all.conf").mkdir(parents=True)),
    "path-fragment-unknown-selector": Case(BASE, {"local.conf.d/nobody.conf": "[[local|localrc]]\n"}),
    "path-fragments-dir-outside": Case(BASE, setup=link("/etc", "local.conf.d")),
    # --- sizes
    "size-lab-file": Case(BASE + "# " + "x" * (2 * 1024 * 1024) + "\n"),
    "size-fragment": Case(BASE, {"local.conf.d/all.conf": "[[local|localrc]]\n" + "X=1\n" * 100_000}),
    "size-name": Case("name: " + "a" * 10_000 + "\nmachines:\n  - {name: ks}\n"),
    "size-cidr-everything": Case("name: h\nnetwork: {cidr: 0.0.0.0/0}\nmachines:\n  - {name: ks}\n"),
    "size-cidr-slash-8": Case("name: h\nnetwork: {cidr: 10.0.0.0/8}\nmachines:\n  - {name: ks}\n"),
    "size-count": Case("name: h\nmachines:\n  - {name: ks, count: 100000}\n"),
    "size-memory": Case("name: h\nmachines:\n  - {name: ks, memory: 99999999999G}\n"),
    "size-huge-int": Case("name: h\nmachines:\n  - {name: ks, cpus: " + "9" * 5000 + "}\n"),
    # --- networks
    "net-management": Case("name: h\nnetwork: {cidr: 192.168.121.0/24}\nmachines:\n  - {name: ks}\n"),
    "net-loopback": Case("name: h\nnetwork: {cidr: 127.0.0.0/24}\nmachines:\n  - {name: ks}\n"),
    "net-multicast": Case("name: h\nnetwork: {cidr: 224.0.0.0/24}\nmachines:\n  - {name: ks}\n"),
    "net-public": Case("name: h\nnetwork: {cidr: 8.8.8.0/24}\nmachines:\n  - {name: ks}\n"),
    # --- encodings
    "enc-lab-latin1": Case(b"name: h\nmachines:\n  - {name: ks}\n# caf\xe9\n"),  # type: ignore[arg-type]
    "enc-fragment-invalid": Case(BASE, {"local.conf.d/all.conf": b"[[local|localrc]]\nX=\xff\xfe\n"}),
    "enc-surrogate": Case("name: h\nmachines:\n  - {name: ks}\ndevstack:\n  localrc: {X: \"\\ud800\"}\n"),
    "enc-fullwidth-memory": Case("name: h\nmachines:\n  - {name: ks, memory: \"\uff18G\"}\n"),
    "enc-fullwidth-cpus": Case("name: h\nmachines:\n  - {name: ks, cpus: \"\uff12\"}\n"),
    "enc-zero-width-name": Case("name: h\u200b\nmachines:\n  - {name: ks}\n"),
    "enc-rtl-value": Case(localrc("X: \"a\u202eb\""), harmless=reads_as({"X": "a\u202eb"})),
    "enc-bom": Case("\ufeff" + BASE, harmless=lambda folder, conf: None),
    # A classroom (issue 11): names printed on sheets and in terminals, ports, addresses.
    **{f"class-{key}": Case(f"name: hostile\nclassroom: {value}\n") for key, value in {
        "escape-name": '{seats: 2, trainees: ["\\e]0;pwned\\a Ada"]}',
        "newline-name": '{seats: 2, trainees: ["Ada\\nBob"]}',
        "bidi-name": '{seats: 2, trainees: ["\\u202egnp.exe"]}',
        "nul-name": '{seats: 2, trainees: ["Ada\\0"]}',
        "huge-name": "{seats: 2, trainees: [" + "x" * 5000 + "]}",
        "many-trainees": "{trainees: [" + ", ".join(["t"] * 5000) + "]}",
        "bool-seats": "{seats: yes}",
        "float-seats": "{seats: 2.5}",
        "huge-seats": "{seats: " + "9" * 5000 + "}",
        "negative-spares": "{seats: 2, spares: -1}",
        "shell-address": '{seats: 2, address: "$(touch canary)"}',
        "option-address": '{seats: 2, address: "-oProxyCommand=touch canary"}',
        "listen-name": '{seats: 2, listen: "localhost; touch canary"}',
        "privileged-port": "{seats: 2, ssh_port: 21}",
        "port-overflow": "{seats: 3, web_port: 65534}",
        "seat-role": "{seats: 2, seat: {role: controller}}",
        "seat-count": "{seats: 2, seat: {count: 40}}",
        "seat-ruby": '{seats: 2, seat: {box: "#{`touch canary`}"}}',
        "with-machines": "{seats: 2}\nmachines: [{name: m}]",
    }.items()},
    # A classroom hands its seats' stack to every trainee: no working tree from outside the lab's folder.
    "path-class-checkout-outside": Case("name: hostile\nclassroom: {seats: 2}\n"
                                        "devstack: {projects: {keystone: ../trainers-secrets}}\n",
                                        setup=lambda folder: checkout_at(folder.parent / "trainers-secrets")),
    "path-class-checkout-link": Case("name: hostile\nclassroom: {seats: 2}\n"
                                     "devstack: {projects: {keystone: ./keystone}}\n",
                                     setup=lambda folder: (checkout_at(folder.parent / "trainers-secrets"),
                                                           link(str(folder.parent / "trainers-secrets"),
                                                                "keystone")(folder))),
    "path-class-devstack-outside": Case("name: hostile\nclassroom: {seats: 2}\ndevstack: {repo: ../devstack}\n",
                                        setup=lambda folder: devstack_at(folder.parent / "devstack")),
    # The same checkout inside the folder is taken.
    "path-class-checkout-inside": Case("name: hostile\nclassroom: {seats: 2}\n"
                                       "devstack: {projects: {keystone: ./keystone}}\n",
                                       setup=lambda folder: checkout_at(folder / "keystone"),
                                       harmless=conf_has("KEYSTONE_BRANCH=labctl-worktree")),
}


def _write(folder: Path, case: Case) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lab = folder / "lab.yaml"
    if isinstance(case.lab, bytes):
        lab.write_bytes(case.lab)
    else:
        lab.write_text(case.lab.replace("{dir}", str(folder)), encoding="utf-8", errors="surrogatepass")
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.setup:
        case.setup(folder)
    return lab


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 90
    kinds = {name.split("-", 1)[0] for name in CASES}
    assert {"ruby", "jinja", "shell", "yaml", "path", "size", "enc"} <= kinds


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_lab_folder(run: Callable[..., Result], tmp_path: Path, labctl_home: Path, name: str) -> None:
    case = CASES[name]
    folder = tmp_path / "course"
    lab = _write(folder, case)
    result = run("plan", "-f", str(lab), "--json")
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    assert "\x1b" not in result.err + result.out and "\x07" not in result.err
    assert not list(tmp_path.rglob(f"{CANARY}*")) and not list(tmp_path.rglob("canary"))
    if case.harmless is None:
        assert result.code == 2, f"{name} was not refused:\n{result.out[-2000:]}"
        lines = result.err.strip().splitlines()
        # One error, or several found at once (lab.yaml's shape): one line each, indented under it.
        assert lines and lines[0].startswith("labctl: error: "), result.err
        assert all(line.startswith("  ") for line in lines[1:]) and len(lines) <= 2 + 2 * MAX_DETAILS, result.err
        assert len(result.err) < 2000 if len(lines) <= 2 else all(len(line) < 700 for line in lines)
        assert not (labctl_home / "labs").exists() or not any((labctl_home / "labs").iterdir())
    else:
        assert result.code == 0, result.err
        import json

        conf = Path(json.loads(result.out)["machines"][0]["local_conf"]).read_text()
        case.harmless(folder, conf)


def test_a_huge_devstack_folder_is_refused_before_anything_is_read_into_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`devstack.repo` may name any folder with a stack.sh: one holding gigabytes is refused with a hint
    (it was once read whole into memory to push it), and a DevStack checkout's tarball is a file on disk
    whose links stay links (a link to the host's files carries no content) and which leaves local.conf out."""
    import tarfile

    from labctl import devstack_source
    from labctl.devstack_source import devstack_tarball
    from labctl.errors import LabctlError

    folder = tmp_path / "devstack"
    folder.mkdir()
    (folder / "stack.sh").write_text("#!/bin/bash\n")
    (folder / "local.conf").write_text("[[local|localrc]]\nADMIN_PASSWORD=mine\n")
    (folder / "lib").mkdir()
    (folder / "lib" / "keystone").write_text("function install_keystone { :; }\n")
    (folder / "passwd").symlink_to("/etc/passwd")
    (folder / "elsewhere").symlink_to("/usr")  # a folder link: neither walked nor counted
    with devstack_tarball(folder) as tarball:
        assert tarball.parent == Path("/var/tmp")
        with tarfile.open(tarball) as tar:
            members = {m.name: m for m in tar.getmembers()}
    assert not tarball.exists()
    assert {"./stack.sh", "./lib/keystone", "./passwd"} <= set(members) and "./local.conf" not in members
    assert members["./passwd"].issym() and members["./elsewhere"].issym()

    monkeypatch.setattr(devstack_source, "MAX_DEVSTACK_BYTES", 2**20)
    with (folder / "core").open("wb") as core:  # sparse: 3 MiB counted, nothing written
        core.truncate(3 * 2**20)
    with pytest.raises(LabctlError) as err, devstack_tarball(folder):
        pass
    assert "holds more than" in err.value.message and err.value.hint
