"""DevStack's libraries: what stack.sh installs from git instead of from PyPI when LIBS_FROM_GIT names
them, each with the prefix of its variables (OSLOCFG: OSLOCFG_REPO, OSLOCFG_BRANCH).

Copied from DevStack's stackrc (its GITREPO table, stable/2026.1 and master alike): the variables
are DevStack's own, abbreviated by hand over the years, so they cannot be derived from a name.
Each is cloned into /opt/stack/NAME and installed editable (`pip install -e`, its setup_dev_lib).
"""

from __future__ import annotations

LIBRARIES = {
    "python-cinderclient": "CINDERCLIENT",
    "python-brick-cinderclient-ext": "BRICK_CINDERCLIENT",
    "python-barbicanclient": "BARBICANCLIENT",
    "python-glanceclient": "GLANCECLIENT",
    "python-ironicclient": "IRONICCLIENT",
    "keystoneauth": "KEYSTONEAUTH",
    "python-keystoneclient": "KEYSTONECLIENT",
    "python-neutronclient": "NEUTRONCLIENT",
    "python-novaclient": "NOVACLIENT",
    "python-swiftclient": "SWIFTCLIENT",
    "python-openstackclient": "OPENSTACKCLIENT",
    "osc-placement": "OSC_PLACEMENT",
    "castellan": "CASTELLAN",
    "cliff": "CLIFF",
    "futurist": "FUTURIST",
    "debtcollector": "DEBTCOLLECTOR",
    "etcd3gw": "ETCD3GW",
    "automaton": "AUTOMATON",
    "oslo.cache": "OSLOCACHE",
    "oslo.concurrency": "OSLOCON",
    "oslo.config": "OSLOCFG",
    "oslo.context": "OSLOCTX",
    "oslo.db": "OSLODB",
    "oslo.i18n": "OSLOI18N",
    "oslo.limit": "OSLOLIMIT",
    "oslo.log": "OSLOLOG",
    "oslo.messaging": "OSLOMSG",
    "oslo.middleware": "OSLOMID",
    "oslo.policy": "OSLOPOLICY",
    "oslo.privsep": "OSLOPRIVSEP",
    "oslo.reports": "OSLOREPORTS",
    "oslo.rootwrap": "OSLORWRAP",
    "oslo.serialization": "OSLOSERIALIZATION",
    "oslo.service": "OSLOSERVICE",
    "oslo.utils": "OSLOUTILS",
    "oslo.versionedobjects": "OSLOVERSIONEDOBJECTS",
    "oslo.vmware": "OSLOVMWARE",
    "osprofiler": "OSPROFILER",
    "pycadf": "PYCADF",
    "stevedore": "STEVEDORE",
    "taskflow": "TASKFLOW",
    "tooz": "TOOZ",
    "pbr": "PBR",
    "cursive": "CURSIVE",
    "glance_store": "GLANCE_STORE",
    "keystonemiddleware": "KEYSTONEMIDDLEWARE",
    "ceilometermiddleware": "CEILOMETERMIDDLEWARE",
    "openstacksdk": "OPENSTACKSDK",
    "os-brick": "OS_BRICK",
    "os-client-config": "OS_CLIENT_CONFIG",
    "os-vif": "OS_VIF",
    "osc-lib": "OSC_LIB",
    "ironic-lib": "IRONIC_LIB",
    "diskimage-builder": "DIB",
    "neutron-lib": "NEUTRON_LIB",
    "os-resource-classes": "OS_RESOURCE_CLASSES",
    "os-traits": "OS_TRAITS",
    "ovsdbapp": "OVSDBAPP",
    "os-ken": "OS_KEN",
}


def library_variable(name: str, what: str) -> str:
    """DevStack's variable for a library's repository or branch: library_variable("oslo.config", "REPO")
    is OSLOCFG_REPO."""
    return f"{LIBRARIES[name]}_{what}"


def libs_from_git(value: str) -> list[str]:
    """The libraries a LIBS_FROM_GIT value names (DevStack splits it on commas; ALL is every one)."""
    names = [n.strip() for n in value.strip("'\"").split(",") if n.strip()]
    return list(LIBRARIES) if "ALL" in names else names
