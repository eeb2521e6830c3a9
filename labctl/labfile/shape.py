"""lab.yaml's shape as one pydantic model: every key, how sections nest, and each value's kind.

It gives three things: the JSON Schema that editors read (`labctl schema`), every shape error of a
file at once (labctl.labfile.problems says them, with lines and did-you-means), and the keys each
section's parser accepts. A leaf is checked by the same function its section's parser uses
(labctl.labfile.scalars), so a rule is written once. What spans several fields (addresses inside the
network, the catalogue, files on disk, one controller) is checked afterwards, by the parsers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from labctl.catalog import BOX_RE
from labctl.classroom.seats import MAX_SEATS, trainee_name
from labctl.cloud.spec import CONTAINER_FORMATS, DISK_FORMATS, LABCTL_KEYPAIR, MAX_ITEMS
from labctl.errors import LabFileError, show
from labctl.labfile.scalars import (
    certificate_path,
    check_name,
    matching,
    one_line,
    parse_disk,
    parse_memory,
    true_or_false,
    whole_number,
)
from labctl.model import ACCELERATORS, ROLES

SCHEMA_ID = "urn:labctl:lab.yaml"  # names the schema; nothing fetches it
SCHEMA_FILE = "lab.schema.json"


def _checked(check: Callable[[object], object]) -> PlainValidator:
    """A value checked by one of labctl's own functions: its LabFileError becomes this field's error."""

    def validate(value: object) -> object:
        try:
            check(value)
        except LabFileError as exc:
            raise PydanticCustomError("labctl", "{message}",
                                      {"message": exc.message.removeprefix(": "), "hint": exc.hint or ""}) from None
        return value

    return PlainValidator(validate)


def _is_text(value: object) -> None:
    if not isinstance(value, str):
        raise LabFileError(f": expected text, got {show(value)}")


def _one_of(values: tuple[str, ...]) -> PlainValidator:
    def check(value: object) -> None:
        if value not in values:
            raise LabFileError(f": expected one of {', '.join(values)}, got {show(value)}")

    return _checked(check)


def _whole(lo: int, hi: int) -> PlainValidator:
    return _checked(lambda v: whole_number(v, "", lo, hi))


def _doc(description: str, **schema: object) -> WithJsonSchema:
    return WithJsonSchema({**schema, "description": description})


_TEXT = _checked(_is_text)
Text = Annotated[object, _TEXT, _doc("Text.", type="string")]
_NAME_SCHEMA = {"type": "string", "pattern": "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", "maxLength": 63}
Name = Annotated[object, _checked(lambda v: check_name(v, "")), WithJsonSchema(_NAME_SCHEMA)]
HostName = Annotated[object, _checked(lambda v: v is None or check_name(v, "")),
                     _doc("The host of the inventory (hosts.yaml) the machines run on.", **_NAME_SCHEMA)]
Trainee = Annotated[object, _checked(lambda v: trainee_name(v, "")),
                    _doc("A trainee's name, printed on their card.", type="string", maxLength=60)]


Certificate = Annotated[object, _checked(lambda v: certificate_path(v, "")),
                        _doc("A PEM file on this host.", type="string")]
Memory = Annotated[object, _checked(lambda v: parse_memory(v, "")), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 512},
              {"type": "string", "pattern": r"^\s*[0-9]+\s*([mMgG]|[mMgG][bB]|[mMgG][iI][bB])?\s*$"}],
    "description": "Memory: 8G, 8192M or 8192 (MiB).", "examples": ["8G"]})]
Disk = Annotated[object, _checked(lambda v: parse_disk(v, "")), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 5},
              {"type": "string", "pattern": r"^\s*[0-9]+\s*([gGtT]|[gGtT][bB]|[gGtT][iI][bB])?\s*$"}],
    "description": "Disk: 40G, 1T or 40 (GB).", "examples": ["40G"]})]
Flag = Annotated[object, _checked(lambda v: true_or_false(v, "")), WithJsonSchema({"type": "boolean"})]
Value = Annotated[object, _checked(lambda v: one_line(v, "")),
                  _doc("One line: text, a number, or true/false.",
                       anyOf=[{"type": "string", "pattern": "^[^\\n\\r\\x00]*$"}, {"type": ["number", "boolean"]}])]
Cpus = Annotated[object, _whole(1, 256), _doc("Virtual CPUs.", type="integer", minimum=1, maximum=256)]
Distro = Annotated[object, _TEXT, _doc("A distro of `labctl boxes`: debian, debian:12, ubuntu:24.04...",
                                       type="string")]
Box = Annotated[object, _checked(lambda v: matching(v, "", BOX_RE, "a Vagrant box name like debian/bookworm64")),
                _doc("A Vagrant box to use instead of the catalogue's.", type="string",
                     pattern="^" + BOX_RE.pattern.removesuffix("\\Z") + "$")]
Role = Annotated[object, _one_of(ROLES),
                 _doc("allinone: a whole DevStack; controller and compute: a multinode DevStack.", enum=list(ROLES))]
Accelerator = Annotated[object, _one_of(ACCELERATORS),
                        _doc("auto: KVM where the host has it, else software emulation.", enum=list(ACCELERATORS))]
DiskFormat = Annotated[object, _one_of(DISK_FORMATS), _doc("Glance's disk format.", enum=list(DISK_FORMATS))]
ContainerFormat = Annotated[object, _one_of(CONTAINER_FORMATS),
                            _doc("Glance's container format (default bare).", enum=list(CONTAINER_FORMATS))]
Count = Annotated[object, _whole(1, 200), _doc("How many machines of this kind (named NAME-1, NAME-2...).",
                                               type="integer", minimum=1, maximum=200)]
Seats = Annotated[object, _whole(1, MAX_SEATS), _doc("At least this many seats.", type="integer", minimum=1,
                                                     maximum=MAX_SEATS)]
Spares = Annotated[object, _whole(0, MAX_SEATS), _doc("Extra seats for walk-ins.", type="integer", minimum=0,
                                                      maximum=MAX_SEATS)]
Port = Annotated[object, _whole(1024, 65535), _doc("Seat N uses this port + N.", type="integer", minimum=1024,
                                                   maximum=65535)]
Ram = Annotated[object, _whole(64, 1 << 20), _doc("MiB.", type="integer", minimum=64)]
FlavorDisk = Annotated[object, _whole(0, 1 << 16), _doc("GB.", type="integer", minimum=0)]
FlavorCpus = Annotated[object, _whole(1, 256), _doc("CPUs.", type="integer", minimum=1, maximum=256)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DefaultsShape(_Shape):
    """What every machine has unless it says otherwise."""

    model_config = ConfigDict(title="defaults")
    distro: Distro = None
    memory: Memory = None
    cpus: Cpus = None
    disk: Disk = None


class SeatShape(DefaultsShape):
    """The machine every seat of a classroom is a copy of: the defaults' keys, and where it runs."""

    model_config = ConfigDict(title="classroom.seat")
    box: Box = None
    host: HostName = None


class MachineShape(SeatShape):
    """One machine of the lab, or `count` of them named NAME-1, NAME-2..."""

    model_config = ConfigDict(title="machine")
    name: Name
    role: Role = None
    count: Count = None
    ip: Text = None


class NetworkShape(_Shape):
    model_config = ConfigDict(title="network")

    cidr: Text = None


class PluginShape(_Shape):
    model_config = ConfigDict(title="devstack plugin")

    url: Text
    branch: Text = None


class DevstackShape(_Shape):
    """Where DevStack comes from and what it stacks."""

    model_config = ConfigDict(title="devstack")
    repo: Text = None
    branch: Text = None
    force: Flag = None
    localrc: dict[str, Value] | None = Field(None, description="Variables of local.conf's [[local|localrc]].")
    post_config: dict[str, dict[str, dict[str, Value]]] | None = Field(
        None, description="FILE ($NOVA_CONF or a path) -> section -> option -> value.")
    enable_services: list[Text] | None = None
    disable_services: list[Text] | None = None
    plugins: dict[str, PluginShape] | None = Field(None, description="NAME: URL, or NAME: {url:, branch:}.")
    git_base: Text = None
    preinstall: Flag = None
    projects: dict[str, Text] | None = Field(
        None, description="PROJECT: a checkout on this host; the machines stack its working tree, uncommitted"
                          " changes included (labctl sync PROJECT brings later changes in).")

    @field_validator("plugins", mode="before")
    @classmethod
    def _url_alone(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"url": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class ProxyShape(_Shape):
    model_config = ConfigDict(title="proxy")

    http: Text = None
    https: Text = None
    no_proxy: Text = None


class ClassroomShape(_Shape):
    """One seat machine per trainee (seat-01, seat-02...), each reachable through this host."""

    model_config = ConfigDict(title="classroom")
    seats: Seats = None
    trainees: list[Trainee] | None = None
    spares: Spares = None
    seat: SeatShape | None = None
    address: Text = None
    listen: Text = None
    ssh_port: Port = None
    web_port: Port = None
    clone: Flag = None
    seat_networks: Flag = None


class ImageShape(_Shape):
    model_config = ConfigDict(title="cloud image")

    name: Text
    file: Text = None
    url: Text = None
    disk_format: DiskFormat
    container_format: ContainerFormat = None
    kernel: Text = None
    ramdisk: Text = None
    properties: dict[str, object] | None = None


class FlavorShape(_Shape):
    model_config = ConfigDict(title="cloud flavor")

    name: Text
    ram: Ram
    disk: FlavorDisk = None
    vcpus: FlavorCpus = None


class KeypairShape(_Shape):
    model_config = ConfigDict(title="cloud keypair")

    name: Text
    public_key: Text = None


class CloudShape(_Shape):
    """What the stacked cloud holds on day one."""

    model_config = ConfigDict(title="cloud")
    images: list[ImageShape] | None = Field(None, max_length=MAX_ITEMS)
    flavors: list[FlavorShape] | None = Field(None, max_length=MAX_ITEMS)
    keypair: KeypairShape | None = Field(None, description="`labctl` (the machine's own key) or {name, public_key}.")
    security_group_rules: list[Text] | None = Field(
        None, max_length=MAX_ITEMS)

    @field_validator("keypair", mode="before")
    @classmethod
    def _labctl_key(cls, value: object) -> object:
        return {"name": LABCTL_KEYPAIR} if value == LABCTL_KEYPAIR else value


class LabShape(_Shape):
    """A labctl lab: machines (or a classroom of seats) running DevStack."""

    model_config = ConfigDict(title="lab.yaml")
    name: Name
    defaults: DefaultsShape | None = None
    network: NetworkShape | None = None
    machines: list[MachineShape] | None = None
    devstack: DevstackShape | None = None
    accelerator: Accelerator = None
    ca_certificates: list[Certificate] | None = None
    proxy: ProxyShape | None = None
    classroom: ClassroomShape | None = None
    caches: Flag = None
    cloud: CloudShape | None = None
    nested: Annotated[object, _checked(lambda v: true_or_false(v, "")),
                      _doc("KVM inside the machines, for Nova's guests at full speed (DevStack's LIBVIRT_TYPE=kvm):"
                           " only on a host whose KVM allows nested guests.", type="boolean")] = None


def keys(shape: type[BaseModel]) -> tuple[str, ...]:
    """The keys a section accepts: its parser's list, so that the schema and the parser agree."""
    return tuple(shape.model_fields)


def schema() -> dict[str, object]:
    """lab.yaml's JSON Schema (draft 2020-12), for editors (yaml-language-server) and scripts."""
    body = LabShape.model_json_schema()
    # The two short forms the parsers also take (before-validators, which the schema cannot see).
    defs = body["$defs"]
    plugins = defs["DevstackShape"]["properties"]["plugins"]["anyOf"][0]
    plugins["additionalProperties"] = {"anyOf": [{"type": "string"}, plugins["additionalProperties"]]}
    defs["CloudShape"]["properties"]["keypair"]["anyOf"].insert(0, {"const": LABCTL_KEYPAIR})
    clean = _without_null_defaults(body)
    assert isinstance(clean, dict)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **clean, "title": "labctl lab.yaml"}


def _without_null_defaults(node: object) -> object:
    """The schema without `"default": null`: an absent key means labctl's default, and an editor
    would otherwise offer `null` as the value to write."""
    if isinstance(node, dict):
        return {k: _without_null_defaults(v) for k, v in node.items() if not (k == "default" and v is None)}
    if isinstance(node, list):
        return [_without_null_defaults(v) for v in node]
    return node
