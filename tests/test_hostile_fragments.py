"""local.conf.d fragments from a stranger's lab folder (issue 10, item 1): Jinja must never reach
Python objects, the host's files, or unbounded memory and time; every such fragment is one clean
error (or harmless text), and `plan` writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result

PWNED = "/tmp/labctl-pwned-by-fragment"

HOSTILE = {
    "globals": "{{ lab.__init__.__globals__['__builtins__']['__import__']('os').system('touch " + PWNED + "') }}",
    "class-walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "write-file": "{{ lab.source.parent.joinpath('x').write_text('owned') }}",
    "method-call": "{{ machine.release.devstack_support('master') }}",
    "mutate": "{{ passwords.update({'admin': 'x'}) }}",
    "include": "{% include '/etc/passwd' %}",
    "import": "{% import '/etc/passwd' as p %}",
    "extends": "{% extends '/etc/passwd' %}",
    "big-string": "[[local|localrc]]\nX={{ 'x' * 2000000000 }}",
    "big-power": "[[local|localrc]]\nX={{ 7 ** 999999999 }}",
    "big-range": "[[local|localrc]]\n{% for i in range(10**9) %}X{{ i }}=1\n{% endfor %}",
    "long-loop": "[[local|localrc]]\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                 "{% endfor %}",
    "big-output": "[[local|localrc]]\n{% for i in range(100000) %}{% for j in range(1000) %}X=1\n{% endfor %}"
                  "{% endfor %}",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_fragment_is_one_line_and_writes_nothing(run: Callable[..., Result], tmp_path: Path,
                                                         labctl_home: Path, text: str) -> None:
    Path(PWNED).unlink(missing_ok=True)
    (tmp_path / "local.conf.d").mkdir()
    (tmp_path / "local.conf.d" / "all.conf").write_text(text + "\n")
    (tmp_path / "lab.yaml").write_text("name: hostile\nmachines:\n  - {name: ks}\n")
    result = run("plan", "-f", str(tmp_path / "lab.yaml"))
    assert not Path(PWNED).exists()
    assert not (tmp_path / "x").exists()
    assert result.code == 2, result.out + result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    assert len(result.err.strip().splitlines()) <= 2 and "all.conf" in result.err
    assert not (labctl_home / "labs" / "hostile").exists()


def test_fragments_still_see_plain_lab_data(run: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "local.conf.d").mkdir()
    (tmp_path / "local.conf.d" / "all.conf").write_text(
        "[[local|localrc]]\nWHO={{ lab.name }}-{{ machine.name }}-{{ machine.role }}-{{ machine.ip }}\n"
        "N={{ lab.machines | length }}\nBR={{ devstack.branch }}\n"
        "{% for m in lab.machines %}PEER_{{ loop.index }}={{ m.ip }}\n{% endfor %}")
    (tmp_path / "lab.yaml").write_text("name: plain\nnetwork: {cidr: 10.9.0.0/24}\nmachines:\n  - {name: ks}\n"
                                       "  - {name: ctl2}\n")
    result = run("plan", "-f", str(tmp_path / "lab.yaml"), "--json")
    assert result.code == 0, result.err
    import json

    conf = Path(json.loads(result.out)["machines"][0]["local_conf"]).read_text()
    assert "WHO=plain-ks-allinone-10.9.0.10\nN=2\nBR=master\nPEER_1=10.9.0.10\nPEER_2=10.9.0.11\n" in conf


@pytest.mark.parametrize("line", ["ADMIN_PASSWORD=mine", "HOST_IP=10.0.0.99", "  ADMIN_PASSWORD=mine",
                                  "export SERVICE_PASSWORD=x", "readonly DATABASE_PASSWORD",
                                  "declare -g RABBIT_PASSWORD=x", "eval SERVICE_HOST=1.2.3.4"])
def test_fragments_may_not_set_what_labctl_manages(run: Callable[..., Result], tmp_path: Path, labctl_home: Path,
                                                  line: str) -> None:
    (tmp_path / "local.conf.d").mkdir()
    (tmp_path / "local.conf.d" / "all.conf").write_text(f"[[local|localrc]]\n{line}\n")
    (tmp_path / "lab.yaml").write_text("name: managed\nmachines:\n  - {name: ks}\n")
    result = run("plan", "-f", str(tmp_path / "lab.yaml"))
    assert result.code == 2 and "which labctl sets itself" in result.err and "all.conf" in result.err
    assert not (labctl_home / "labs" / "managed").exists()


def test_fragments_may_refer_to_what_labctl_manages(run: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "local.conf.d").mkdir()
    (tmp_path / "local.conf.d" / "all.conf").write_text(
        "[[local|localrc]]\nMY_IP=$HOST_IP\nOTHER=${SERVICE_HOST}\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\n"
        "my_ip = $HOST_IP\n")
    (tmp_path / "lab.yaml").write_text("name: managed\nmachines:\n  - {name: ks}\n")
    assert run("plan", "-f", str(tmp_path / "lab.yaml")).code == 0
