"""lab.yaml's devstack section: where DevStack comes from, its localrc, post-config, services and
plugins. Every value here ends up in a file DevStack sources or evaluates: each is checked against
what means nothing to a shell."""

from __future__ import annotations

import re
from pathlib import Path

from labctl.devstack_libraries import LIBRARIES
from labctl.errors import LabFileError, show
from labctl.labfile.scalars import matching, one_line, true_or_false
from labctl.labfile.shape import DevstackShape, PluginShape
from labctl.labfile.shape import keys as shape_keys
from labctl.labyaml import listed, mapping
from labctl.localconf import REFERENCE_RE
from labctl.model import (
    DEFAULT_DEVSTACK_BRANCH,
    DEFAULT_DEVSTACK_REPO,
    MANAGED_LOCALRC,
    DevstackSpec,
    Plugin,
    PostConfig,
    Project,
)

_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*\Z")
# A post-config file: a DevStack variable ($NOVA_CONF, ${NOVA_CONF}) or an absolute path.
_CONF_FILE_RE = re.compile(r"(\$[A-Z_][A-Z0-9_]*|\$\{[A-Z_][A-Z0-9_]*\}|/[A-Za-z0-9._/-]+)\Z")
_INI_SECTION_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
_INI_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
# A git URL: its characters are those of URLs that mean nothing to a shell (no ; $ ` ' " ( ) & | < >
# space or glob), since DevStack sources the lines they end up in (enable_plugin, GIT_BASE).
URL_RE = re.compile(r"([a-z][a-z0-9+.-]*://|git@)[A-Za-z0-9._~:/@%+=,-]+\Z")
# DevStack evals post-config values inside double quotes (`iniset file sec key "value"` piped to
# `while read a; do eval "$a"`): these characters would break out of that or be eaten by read.
_INI_VALUE_FORBIDDEN = set('"`\\\n\r\0')


def url_or_folder(value: object, path: str, base_dir: Path | None) -> str:
    """A git URL as it is, or a folder on the host made absolute (relative to lab.yaml's folder)."""
    if not isinstance(value, str) or not value or any(c.isspace() or c in "'\"\\`\0" for c in value):
        raise LabFileError(f"{path}: expected a git URL or a folder, got {show(value)}")
    if URL_RE.match(value):
        return value.rstrip("/")
    folder = Path(value).expanduser()
    return str(folder if folder.is_absolute() or base_dir is None else (base_dir / folder).resolve())


def parse_devstack(raw: object, base_dir: Path | None) -> DevstackSpec:
    data = mapping(raw, "devstack", shape_keys(DevstackShape))
    git_base = url_or_folder(data["git_base"], "devstack.git_base", base_dir) if "git_base" in data else None
    if git_base and not URL_RE.match(git_base) and not Path(git_base).is_dir():
        raise LabFileError(f"devstack.git_base: {git_base} is no folder",
                           hint="give a URL like https://opendev.org, or a folder of mirrors laid out as"
                                " FOLDER/openstack/NAME.git")
    # With mirrors, DevStack itself comes from them too, unless repo says otherwise.
    default_repo = f"{git_base}/openstack/devstack.git" if git_base else DEFAULT_DEVSTACK_REPO
    repo = url_or_folder(data.get("repo", default_repo), "devstack.repo", base_dir)
    branch = matching(data.get("branch", DEFAULT_DEVSTACK_BRANCH), "devstack.branch", _BRANCH_RE,
                   "a branch or tag like master or stable/2025.1")
    if ".." in branch:
        raise LabFileError(f"devstack.branch: invalid branch {show(branch)}")
    localrc: list[tuple[str, str]] = []
    for name, value in mapping(data.get("localrc"), "devstack.localrc").items():
        path = f"devstack.localrc.{name}"
        matching(name, path, _VAR_RE, "a shell variable name")
        if name in MANAGED_LOCALRC:
            raise LabFileError(f"{path}: labctl sets this variable itself", hint=MANAGED_LOCALRC[name])
        if name == "GIT_BASE" and git_base:
            raise LabFileError(f"{path}: devstack.git_base sets GIT_BASE already", hint="keep only devstack.git_base")
        localrc.append((name, one_line(value, path)))
    preinstall = true_or_false(data.get("preinstall", False), "devstack.preinstall")
    if preinstall and URL_RE.match(repo):
        raise LabFileError("devstack.preinstall: DevStack's package lists are read on this host, and devstack.repo"
                           " is a URL",
                           hint="set devstack.git_base (or devstack.repo) to a folder on this host, or drop"
                                " devstack.preinstall")
    return DevstackSpec(
        repo=repo, branch=branch, force=true_or_false(data.get("force", False), "devstack.force"),
        localrc=tuple(localrc), post_config=_post_config(data.get("post_config")),
        enable_services=_services(data.get("enable_services"), "devstack.enable_services"),
        disable_services=_services(data.get("disable_services"), "devstack.disable_services"),
        plugins=_plugins(data.get("plugins")), git_base=git_base,
        preinstall=preinstall, projects=_projects(data.get("projects"), base_dir, dict(localrc)),
    )


def seats_read_inside_the_folder(spec: DevstackSpec, base_dir: Path | None) -> None:
    """A classroom's trainees can read all that their seats stack: the working trees labctl takes from
    the host into them (devstack.projects' checkouts, a DevStack checkout in devstack.repo), untracked
    files and history included, must lie in the lab's folder, as its image files must. A lab from a
    stranger must not hand the trainer's own folders to every trainee."""
    if base_dir is None:
        return
    folder = base_dir.resolve()
    trees = [(f"devstack.projects.{p.name}", p.checkout) for p in spec.projects]
    repo = Path(spec.repo)
    if repo.is_absolute() and (repo / "stack.sh").is_file():
        trees.append(("devstack.repo", repo))
    for path, tree in trees:
        if not tree.resolve().is_relative_to(folder):
            raise LabFileError(f"{path}: {tree} is outside the lab's folder, and every trainee can read what the"
                               " seats stack (its files, uncommitted ones and history included)",
                               hint=f"clone it into the lab's folder: git clone {tree} {folder / tree.name}")


def _post_config(raw: object) -> tuple[PostConfig, ...]:
    items: list[PostConfig] = []
    for file, sections in mapping(raw, "devstack.post_config").items():
        fpath = f"devstack.post_config[{show(file)}]"
        matching(file, fpath, _CONF_FILE_RE, "a DevStack variable like $NOVA_CONF or an absolute path")
        for section, keys in mapping(sections, fpath).items():
            spath = f"{fpath}.{section}"
            matching(section, spath, _INI_SECTION_RE, "an INI section name like DEFAULT")
            for key, value in mapping(keys, spath).items():
                kpath = f"{spath}.{key}"
                matching(key, kpath, _INI_KEY_RE, "an option name")
                text = one_line(value, kpath)
                if any(c in _INI_VALUE_FORBIDDEN for c in text) or "$" in REFERENCE_RE.sub("", text):
                    raise LabFileError(f"{kpath}: value may not contain quotes, backquotes, backslashes or"
                                       " a $ other than $VAR or ${VAR} (DevStack evaluates it in a shell)")
                items.append(PostConfig(file, section, key, text))
    return tuple(items)


def _services(raw: object, path: str) -> tuple[str, ...]:
    return tuple(matching(s, f"{path}[{i}]", _SERVICE_RE, "a DevStack service name")
                 for i, s in enumerate(listed(raw, path)))


_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
# Projects whose repository and branch DevStack takes from <NAME>_REPO and <NAME>_BRANCH (stackrc).
SERVICE_PROJECTS = ("keystone", "nova", "placement", "glance", "neutron", "cinder", "swift", "horizon")


def _projects(raw: object, base_dir: Path | None, localrc: dict[str, str]) -> tuple[Project, ...]:
    projects = []
    for name, value in mapping(raw, "devstack.projects").items():
        path = f"devstack.projects.{name}"
        matching(name, path, _PROJECT_RE, "a project name as DevStack knows it, like keystone or nova")
        if name not in SERVICE_PROJECTS and name not in LIBRARIES:
            raise LabFileError(f"{path}: {name} is neither a project whose services DevStack runs"
                               f" ({', '.join(SERVICE_PROJECTS)}) nor a library it installs from git",
                               hint="a library goes by DevStack's name for it (its stackrc): oslo.config,"
                                    " keystoneauth, python-novaclient, neutron-lib...")
        folder = url_or_folder(value, path, base_dir)
        if URL_RE.match(folder):
            variable = Project(name, Path()).variable("REPO")
            raise LabFileError(f"{path}: {folder} is a URL; devstack.projects names checkouts on this host",
                               hint=f"to stack it from a URL, set devstack.localrc.{variable}")
        checkout = Path(folder)
        if not (checkout / ".git").exists():
            raise LabFileError(f"{path}: {checkout} is no git checkout (it has no .git)",
                               hint=f"clone it first: git clone https://opendev.org/openstack/{name} {checkout}")
        for what in ("REPO", "BRANCH"):
            variable = Project(name, checkout).variable(what)
            if variable in localrc:
                raise LabFileError(f"devstack.localrc.{variable}: devstack.projects.{name} sets it already",
                                   hint=f"keep one of them: the checkout, or localrc's {variable}")
        projects.append(Project(name, checkout))
    return tuple(projects)


def _plugins(raw: object) -> tuple[Plugin, ...]:
    plugins = []
    for name, spec in mapping(raw, "devstack.plugins").items():
        path = f"devstack.plugins.{name}"
        matching(name, path, _SERVICE_RE, "a plugin name")
        if isinstance(spec, str):
            spec = {"url": spec}
        spec = mapping(spec, path, shape_keys(PluginShape))
        url = matching(spec.get("url"), f"{path}.url", URL_RE, "a git URL")
        branch = spec.get("branch")
        if branch is not None:
            matching(branch, f"{path}.branch", _BRANCH_RE, "a branch name")
        plugins.append(Plugin(name, url, branch))
    return tuple(plugins)
