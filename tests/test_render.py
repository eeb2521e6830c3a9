from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, require_tool
from devstack_meta import devstack_services, devstack_source, localrc_env, merged_ini, meta_section_files
from labctl.catalog import Catalog
from labctl.errors import FragmentError
from labctl.host import KVM, QEMU
from labctl.lab import read_fragments
from labctl.labfile import lab_from_dict, load_lab
from labctl.localconf import parse, shell_value
from labctl.model import Lab
from labctl.render import Fragment, render_local_conf, render_vagrantfile, ruby_literal, slow_waits_note

GOLDEN = Path(__file__).parent / "golden"
PASSWORDS = {"admin": "Adm1n", "database": "Db2", "rabbit": "Rb3", "service": "Sv4"}
MULTINODE = """\
name: multi
network: {cidr: 10.42.0.0/24}
defaults: {distro: debian:12, memory: 6G, cpus: 2, disk: 30G}
machines:
  - {name: ctl, role: controller, memory: 8G}
  - {name: cmp, role: compute, count: 2, distro: centos:9}
devstack:
  branch: master
  localrc: {SWIFT_HASH: 66a3d6b56c1f479c8b4e70ab5c2000f5, GREETING: "it's a $HOST_IP `x` $(id)"}
  post_config:
    $NOVA_CONF:
      DEFAULT: {debug: true}
      libvirt: {cpu_mode: none}
  enable_services: [tempest]
  disable_services: [horizon]
  plugins:
    heat: https://opendev.org/openstack/heat
"""


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LABCTL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with LABCTL_UPDATE_GOLDEN=1 if intended"


@pytest.fixture
def multinode(tmp_path: Path, catalog: Catalog) -> Lab:
    lab_dir = tmp_path / "multi"
    (lab_dir / "local.conf.d").mkdir(parents=True)
    (lab_dir / "lab.yaml").write_text(MULTINODE)
    (lab_dir / "local.conf.d" / "all.conf").write_text(
        "# every machine of this lab\n[[local|localrc]]\nLOG_COLOR=True\nPIP_UPGRADE=True\n"
        "[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug = False\nverbose = True\n")
    (lab_dir / "local.conf.d" / "compute.conf").write_text(
        "[[local|localrc]]\nNOVA_VNC_ENABLED=False\n[[post-config|$NOVA_CONF]]\n[libvirt]\nvirt_type = qemu\n")
    (lab_dir / "local.conf.d" / "cmp-2.conf").write_text(
        "[[local|localrc]]\n# only this machine: {{ machine.name }}\nEXTRA_NAME={{ machine.name }}\n")
    return load_lab(lab_dir / "lab.yaml", catalog)


def render_all(lab: Lab) -> dict[str, str]:
    fragments = read_fragments(lab)
    return {m.name: render_local_conf(lab, m, PASSWORDS, fragments) for m in lab.machines}


def vagrantfile(lab: Lab) -> str:
    return render_vagrantfile((REPO / "Vagrantfile.j2").read_text(), lab, QEMU)


def test_golden_vagrantfile(multinode: Lab) -> None:
    check_golden("multi.Vagrantfile", vagrantfile(multinode))


def test_golden_local_confs(multinode: Lab) -> None:
    for name, text in render_all(multinode).items():
        check_golden(f"multi-{name}.local.conf", text)


def test_compute_gets_what_devstack_multinode_needs(multinode: Lab, tmp_path: Path) -> None:
    confs = render_all(multinode)
    env, calls = localrc_env(confs["cmp-1"], tmp_path)
    assert env["HOST_IP"] == "10.42.0.11"
    assert env["SERVICE_HOST"] == "10.42.0.10"
    assert env["MYSQL_HOST"] == env["RABBIT_HOST"] == "10.42.0.10"
    assert env["GLANCE_HOSTPORT"] == "10.42.0.10:9292"
    assert env["DATABASE_TYPE"] == "mysql"
    assert env["ENABLED_SERVICES"] == ("n-cpu,c-vol,placement-client,ovn-controller,ovs-vswitchd,"
                                       "ovsdb-server,q-ovn-metadata-agent")
    assert env["VNCSERVER_PROXYCLIENT_ADDRESS"] == "10.42.0.11"
    assert env["NOVA_VNC_ENABLED"] == "False"  # the lab's compute.conf fragment wins over the built-in
    assert "EXTRA_NAME" not in env
    # Services and plugins belong to the controller: computes run only compute services.
    assert calls == []
    ctl_env, ctl_calls = localrc_env(confs["ctl"], tmp_path)
    assert ctl_env["HOST_IP"] == ctl_env["SERVICE_HOST"] == "10.42.0.10"
    assert ctl_calls == ["enable_service openstack-cli-server", "enable_service tempest", "disable_service horizon",
                         "enable_plugin heat https://opendev.org/openstack/heat"]
    assert localrc_env(confs["cmp-2"], tmp_path)[0]["EXTRA_NAME"] == "cmp-2"


def test_passwords_are_identical_across_machines(multinode: Lab, tmp_path: Path) -> None:
    for text in render_all(multinode).values():
        env, _ = localrc_env(text, tmp_path)
        assert [env[f"{n.upper()}_PASSWORD"] for n in PASSWORDS] == list(PASSWORDS.values())


def test_lab_values_reach_bash_unchanged(multinode: Lab, tmp_path: Path) -> None:
    env, _ = localrc_env(render_all(multinode)["ctl"], tmp_path)
    # $VAR expands as local.conf users expect; backquotes and $( ) are not run.
    assert env["GREETING"] == "it's a 10.42.0.10 `x` $(id)"
    assert env["SWIFT_HASH"] == "66a3d6b56c1f479c8b4e70ab5c2000f5"


def test_meta_sections_are_merged_not_repeated(multinode: Lab) -> None:
    for name, text in render_all(multinode).items():
        assert meta_section_files(text, "local") == ["localrc"], name
        assert meta_section_files(text, "post-config") == ["$NOVA_CONF"], name
        nova = merged_ini(text, "post-config", "$NOVA_CONF")
        # Each option appears once, so DevStack does an iniset (not a multi-line iniadd).
        assert all(len(v) == 1 for options in nova.values() for v in options.values())
        assert nova["DEFAULT"]["debug"] == ["True"]  # lab.yaml beats the all.conf fragment
        assert nova["DEFAULT"]["verbose"] == ["True"]
    computes = merged_ini(render_all(multinode)["cmp-1"], "post-config", "$NOVA_CONF")
    assert computes["libvirt"] == {"cpu_mode": ["none"], "virt_type": ["qemu"]}


def test_force_only_when_asked(catalog: Catalog, tmp_path: Path) -> None:
    raw: dict[str, Any] = {"name": "f", "machines": [{"name": "alpha", "distro": "fedora"}]}
    text = render_all(lab_from_dict(raw, catalog))["alpha"]
    assert "FORCE" not in localrc_env(text, tmp_path)[0]
    raw["devstack"] = {"force": True}
    assert localrc_env(render_all(lab_from_dict(raw, catalog))["alpha"], tmp_path)[0]["FORCE"] == "yes"


def test_localconf_parse_rejects_content_outside_sections() -> None:
    with pytest.raises(FragmentError, match=r"x.conf:2: 'FOO=1' is outside"):
        parse("# c\nFOO=1\n", "x.conf")
    with pytest.raises(FragmentError, match="bad meta-section header"):
        parse("[[local localrc]]\n", "x.conf")
    with pytest.raises(FragmentError, match=r"expected \[section\]"):
        parse("[[post-config|$NOVA_CONF]]\ndebug = 1\n", "x.conf")


def test_user_fragment_errors_name_the_file(multinode: Lab, catalog: Catalog) -> None:
    assert multinode.fragments_dir is not None
    bad = multinode.fragments_dir / "all.conf"
    bad.write_text("[[local|localrc]]\nX={{ nope }}\n")
    with pytest.raises(FragmentError, match=r"all\.conf.*'nope' is undefined"):
        render_all(multinode)
    bad.write_text("[[local|localrc]]\nX={{ machine.name \n")
    with pytest.raises(FragmentError, match=r"all.conf:2: template error"):
        render_all(multinode)
    bad.unlink()
    (multinode.fragments_dir / "comptue.conf").write_text("[[local|localrc]]\n")
    with pytest.raises(FragmentError, match="'comptue', which is no role or machine"):
        read_fragments(multinode)


def test_builtin_fragments_order(catalog: Catalog) -> None:
    lab = lab_from_dict({"name": "t", "machines": [{"name": "alpha"}]}, catalog)
    frags = [Fragment("mine", "all", "[[local|localrc]]\nLIBVIRT_TYPE=kvm\n", False),
             Fragment("base", "base", "[[local|localrc]]\nLIBVIRT_TYPE=qemu\nA=1\n", True)]
    text = render_local_conf(lab, lab.machines[0], PASSWORDS, frags)
    assert text.splitlines()[2:] == ["[[local|localrc]]", "LIBVIRT_TYPE=kvm", "A=1",
                                     "enable_service openstack-cli-server"]


@pytest.mark.parametrize("value", ["plain", "with space", 'q"uote', "back\\slash", "`id`", "$(id)",
                                   "tab\there", "*glob?", "a;b&&c|d", "~user", "it's"])
def test_shell_value_survives_bash(value: str, tmp_path: Path) -> None:
    # $VAR expansion, which is wanted, is checked in test_lab_values_reach_bash_unchanged.
    env, _ = localrc_env(f"[[local|localrc]]\nV={shell_value(value)}\n", tmp_path)
    assert env["V"] == value


HOSTILE = ["plain", "it's", "#{`touch /tmp/labctl-pwned`}", 'dq"#{x}', "back\\slash\\", "new\nline",
           "nul\x00byte", "\x7f", "end'; system('id'); '", "ünïcødé"]


@pytest.mark.parametrize("value", HOSTILE)
def test_ruby_literal_reads_back_exactly(value: str) -> None:
    ruby = require_tool("ruby")
    proc = subprocess.run([ruby, "-e", f"STDOUT.write({ruby_literal(value)})"], capture_output=True, check=True)
    assert proc.stdout.decode() == value
    assert "\n" not in ruby_literal(value)


def test_ruby_literal_other_types() -> None:
    assert [ruby_literal(v) for v in (None, True, False, 3, ["a", 1])] == ["nil", "true", "false", "3", "['a', 1]"]
    with pytest.raises(TypeError):
        ruby_literal(object())


def test_vagrantfile_accelerator_settings(catalog: Catalog) -> None:
    lab = lab_from_dict({"name": "t", "machines": [{"name": "alpha"}]}, catalog)
    emulated = vagrantfile(lab)
    assert "libvirt.driver = 'qemu'" in emulated and "libvirt.cpu_model = 'qemu64'" in emulated
    kvm = render_vagrantfile((REPO / "Vagrantfile.j2").read_text(), lab, KVM)
    assert "libvirt.driver = 'kvm'" in kvm and "host-passthrough" in kvm and "cpu_model" not in kvm
    assert "libvirt.default_prefix = 'labctl-t-'" in emulated


def test_software_emulation_raises_devstack_service_waits(catalog: Catalog, tmp_path: Path) -> None:
    """A slow day failed a real stack at `keystone did not start` (DevStack's SERVICE_TIMEOUT of 60 s):
    under software emulation labctl raises the waits, and a lab that sets them keeps its own."""
    lab = lab_from_dict({"name": "t", "machines": [{"name": "alpha"}]}, catalog)
    fast, _ = localrc_env(render_local_conf(lab, lab.machines[0], PASSWORDS, []), tmp_path)
    assert "SERVICE_TIMEOUT" not in fast and "VIF_PLUGGING_TIMEOUT" not in fast
    slow, _ = localrc_env(render_local_conf(lab, lab.machines[0], PASSWORDS, [], slow=True), tmp_path)
    assert int(slow["SERVICE_TIMEOUT"]) >= 600 and int(slow["VIF_PLUGGING_TIMEOUT"]) >= 900
    assert slow_waits_note(lab, slow=True) and "SERVICE_TIMEOUT=600" in str(slow_waits_note(lab, slow=True))
    assert slow_waits_note(lab, slow=False) is None

    own = lab_from_dict({"name": "t", "machines": [{"name": "alpha"}],
                         "devstack": {"localrc": {"SERVICE_TIMEOUT": 90}}}, catalog)
    mine = Fragment("local.conf.d/all.conf", "all", "[[local|localrc]]\nVIF_PLUGGING_TIMEOUT=42\n", False)
    env, _ = localrc_env(render_local_conf(own, own.machines[0], PASSWORDS, [mine], slow=True), tmp_path)
    assert env["SERVICE_TIMEOUT"] == "90" and env["VIF_PLUGGING_TIMEOUT"] == "42"
    assert "SERVICE_TIMEOUT" not in str(slow_waits_note(own, slow=True))


def test_stack_sh_runs_its_openstack_calls_through_devstacks_cli_server_unless_the_lab_names_it(
        catalog: Catalog, tmp_path: Path) -> None:
    """DevStack's own CI enables openstack-cli-server: stack.sh's `openstack` calls then share one Python
    process (each new one costs about 30 s under software emulation). labctl enables it on the API
    side, after the lab's own ENABLED_SERVICES, and leaves it to a lab that names it anywhere."""
    devstack = devstack_source(tmp_path)

    def services(raw: dict[str, Any], fragments: Sequence[Fragment] = (), machine: int = 0) -> list[str]:
        lab = lab_from_dict({"name": "t", **raw}, catalog)
        text = render_local_conf(lab, lab.machines[machine], PASSWORDS, fragments)
        return devstack_services(text, devstack, tmp_path / f"w{len(list(tmp_path.iterdir()))}")

    one = {"machines": [{"name": "alpha"}]}
    assert services(one) == ["key", "n-api", "g-api", "q-svc", "horizon", "openstack-cli-server"]
    assert services({**one, "devstack": {"localrc": {"ENABLED_SERVICES": "key,mysql"}}}) == [
        "key", "mysql", "openstack-cli-server"]
    assert services({**one, "devstack": {"disable_services": ["openstack-cli-server"]}}) == [
        "key", "n-api", "g-api", "q-svc", "horizon"]
    off = Fragment("local.conf.d/all.conf", "all", "[[local|localrc]]\ndisable_service openstack-cli-server\n", False)
    assert "openstack-cli-server" not in services(one, [off])
    listed = {**one, "devstack": {"localrc": {"ENABLED_SERVICES": "key,openstack-cli-server,mysql"}}}
    assert services(listed) == ["key", "openstack-cli-server", "mysql"]
    lookalike = {**one, "devstack": {"localrc": {"ENABLED_SERVICES": "key,my-openstack-cli-server-x"}}}
    assert services(lookalike) == ["key", "my-openstack-cli-server-x", "openstack-cli-server"]
    multi = {"machines": [{"name": "ctl", "role": "controller"}, {"name": "cmp", "role": "compute"}]}
    assert "openstack-cli-server" in services(multi) and "openstack-cli-server" not in services(multi, machine=1)


def test_nested_labs_run_nova_s_guests_under_kvm(catalog: Catalog, tmp_path: Path) -> None:
    plain = lab_from_dict({"name": "t", "machines": [{"name": "alpha"}]}, catalog)
    nested = lab_from_dict({"name": "t", "nested": True, "machines": [{"name": "alpha"}]}, catalog)
    assert "LIBVIRT_TYPE=qemu" in render_all(plain)["alpha"]
    assert "LIBVIRT_TYPE=kvm" in render_all(nested)["alpha"]
    own = lab_from_dict({"name": "t", "nested": True, "machines": [{"name": "alpha"}],
                         "devstack": {"localrc": {"LIBVIRT_TYPE": "qemu"}}}, catalog)
    assert localrc_env(render_all(own)["alpha"], tmp_path)[0]["LIBVIRT_TYPE"] == "qemu"  # the lab decides
