"""DevStack's local.conf as data: parse meta-sections, merge them, write them back.

A local.conf is a list of meta-sections `[[group|file]]` (see DevStack's inc/meta-config).
`[[local|localrc]]` holds shell lines; every other group holds INI sections merged into `file`.
Merging follows what a person editing by hand would want: a later fragment's variable or INI key
replaces an earlier one (at the earlier one's place, so that `$VAR` references keep their order);
the same meta-section is written once, never repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labctl.errors import FragmentError

# DevStack's header pattern is /^\[\[.+\|.*\]\]/ on the line's first whitespace-separated field.
HEADER_RE = re.compile(r"\[\[([^]|\s]+)\|([^]\s]*)\]\]\s*\Z")
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z")
_SECTION_RE = re.compile(r"\[([^]\s]+)\]\s*\Z")
LOCALRC = ("local", "localrc")
# Values that bash reads the same quoted or not (once plain references are taken out): left bare so
# local.conf looks like DevStack's docs.
_BARE_VALUE_RE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*\Z")
# A plain reference to a variable: the only expansion a value from lab.yaml may make.
REFERENCE_RE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")


@dataclass
class MetaConfig:
    # localrc: ordered lines, each ("var", NAME) or ("cmd", text); values of vars in `variables`.
    lines: list[tuple[str, str]] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    # (group, file) -> section -> key -> value, all in first-seen order.
    blocks: dict[tuple[str, str], dict[str, dict[str, str]]] = field(default_factory=dict)

    def set_var(self, name: str, value: str) -> None:
        if name not in self.variables:
            self.lines.append(("var", name))
        self.variables[name] = value

    def add_command(self, text: str) -> None:
        if ("cmd", text) not in self.lines:
            self.lines.append(("cmd", text))

    def set_option(self, group: str, file: str, section: str, key: str, value: str) -> None:
        self.blocks.setdefault((group, file), {}).setdefault(section, {})[key] = value

    def merge(self, other: MetaConfig) -> None:
        for kind, text in other.lines:
            if kind == "var":
                self.set_var(text, other.variables[text])
            else:
                self.add_command(text)
        for (group, file), sections in other.blocks.items():
            for section, options in sections.items():
                for key, value in options.items():
                    self.set_option(group, file, section, key, value)

    def render(self, header: str = "") -> str:
        out = [header.rstrip("\n")] if header else []
        out.append("[[local|localrc]]")
        out += [f"{t}={self.variables[t]}" if k == "var" else t for k, t in self.lines]
        for (group, file), sections in self.blocks.items():
            out += ["", f"[[{group}|{file}]]"]
            for section, options in sections.items():
                out.append(f"[{section}]")
                out += [f"{key} = {value}" for key, value in options.items()]
        return "\n".join(out) + "\n"


def parse(text: str, origin: str) -> MetaConfig:
    """Parse one fragment. Comments and blank lines are dropped; anything else must sit in a block."""
    conf = MetaConfig()
    block: tuple[str, str] | None = None
    section: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{origin}:{number}"
        if line.startswith("[["):
            match = HEADER_RE.match(line)
            if not match:
                raise FragmentError(f"{where}: bad meta-section header {line!r}",
                                    hint="headers look like [[local|localrc]] or [[post-config|$NOVA_CONF]]")
            block, section = (match[1], match[2]), None
            if block != LOCALRC and not match[2]:
                raise FragmentError(f"{where}: meta-section {line!r} names no file")
            continue
        if block is None:
            raise FragmentError(f"{where}: {line!r} is outside any [[group|file]] meta-section")
        if block == LOCALRC:
            if raw[:1].isspace():
                conf.add_command(line)
            elif assign := _ASSIGN_RE.match(line):
                conf.set_var(assign[1], assign[2])
            else:
                conf.add_command(line)
            continue
        if sec := _SECTION_RE.match(line):
            section = sec[1]
            continue
        key, eq, value = line.partition("=")
        if section is None or not eq or not key.strip():
            raise FragmentError(f"{where}: expected [section] or `key = value` in [[{block[0]}|{block[1]}]],"
                                f" got {line!r}")
        conf.set_option(block[0], block[1], section, key.strip(), value.strip())
    return conf


def shell_value(value: str) -> str:
    """A localrc value from lab.yaml, written so bash reads exactly it. Plain `$VAR` and `${VAR}`
    references still expand (local.conf commonly says `SERVICE_HOST=$HOST_IP`); every other `$`
    (command substitution, arithmetic, `${VAR:...}` and `${VAR@P}`, which evaluate code), backquote,
    quote and backslash is text."""
    plain = REFERENCE_RE.sub("", value)
    if _BARE_VALUE_RE.match(plain) and "$" not in plain:
        return value
    out, pos = [], 0
    for ref in REFERENCE_RE.finditer(value):
        out += [_dq_escape(value[pos:ref.start()]), ref.group()]
        pos = ref.end()
    out.append(_dq_escape(value[pos:]))
    return '"' + "".join(out) + '"'


def _dq_escape(text: str) -> str:
    """Text inside bash double quotes, taken literally."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
