"""lab.yaml's `cloud:` section, validated. Pure: nothing here touches the machine.

    cloud:
      images:
        - name: tiny-kernel
          file: images/vmlinuz          # in the lab's folder; or url: https://... (fetched by the machine)
          disk_format: aki
          container_format: aki
        - name: tiny
          file: images/root.img
          disk_format: ami
          container_format: ami
          kernel: tiny-kernel           # an image listed above: becomes the kernel_id property
          properties: {hw_rng_model: virtio}
      flavors:
        - {name: m1.nano, ram: 128, disk: 1, vcpus: 1}
      keypair: labctl                   # the stack user's own key in the machine; or {name:, public_key:}
      security_group_rules: [ssh, icmp] # in the default group; also tcp/8080, udp/53

Every value reaches the `openstack` command inside the machine as one argument (never a shell), and
an image file must lie inside the lab's folder: a lab from a stranger must not upload the host's files
into a machine whose users (trainees) read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import LabFileError, show
from labctl.labyaml import listed, mapping
from labctl.raw import Raw, RawMap

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("bare", "ovf", "aki", "ari", "ami", "ova", "docker", "compressed")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_PROPERTY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:.-]{0,63}\Z")
_URL_RE = re.compile(r"https?://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+\Z")
_KEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [ -~]{0,200})?\Z")
_RULE_RE = re.compile(r"(tcp|udp)/([0-9]{1,5})\Z")
RULE_NAMES = {"ssh": ("tcp", 22), "http": ("tcp", 80), "https": ("tcp", 443), "icmp": ("icmp", None)}
LABCTL_KEYPAIR = "labctl"
MAX_ITEMS = 50


@dataclass(frozen=True)
class Image:
    name: str
    disk_format: str
    container_format: str
    file: Path | None = None  # on the host, inside the lab's folder
    url: str | None = None  # fetched by the machine itself
    kernel: str | None = None  # names of images listed before it
    ramdisk: str | None = None
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Flavor:
    name: str
    ram_mb: int
    disk_gb: int
    vcpus: int


@dataclass(frozen=True)
class Keypair:
    name: str
    public_key: str | None = None  # None: the stack user's own key in the machine, made if need be


@dataclass(frozen=True)
class Rule:
    protocol: str  # tcp, udp or icmp
    port: int | None = None

    def __str__(self) -> str:
        return self.protocol if self.port is None else f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class CloudSpec:
    images: tuple[Image, ...] = ()
    flavors: tuple[Flavor, ...] = ()
    keypair: Keypair | None = None
    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.images or self.flavors or self.keypair or self.rules)

    def as_json(self, uploaded: Mapping[str, str] | None = None) -> dict[str, object]:
        """What the machine is told (labctl.cloud.guest): image files by where they were uploaded in it
        (`uploaded`: image name -> path), else by the name they are uploaded as."""
        return {
            "images": [{"name": i.name, "disk_format": i.disk_format, "container_format": i.container_format,
                        "file": (uploaded or {}).get(i.name, upload_name(i)) if i.file else None, "url": i.url,
                        "kernel": i.kernel, "ramdisk": i.ramdisk, "properties": dict(i.properties)}
                       for i in self.images],
            "flavors": [{"name": f.name, "ram": f.ram_mb, "disk": f.disk_gb, "vcpus": f.vcpus} for f in self.flavors],
            "keypair": {"name": self.keypair.name, "public_key": self.keypair.public_key} if self.keypair else None,
            "rules": [{"protocol": r.protocol, "port": r.port} for r in self.rules],
        }


def upload_name(image: Image) -> str:
    return f"image-{image.name}"


def _mapping(value: object, path: str, allowed: tuple[str, ...]) -> RawMap:
    if value is None:  # an entry written as `- ` alone
        raise LabFileError(f"{path}: expected a mapping, got nothing")
    return mapping(value, path, allowed)


def _list(value: object, path: str) -> list[Raw]:
    return listed(value, path, MAX_ITEMS)


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise LabFileError(f"{path}: expected a name of letters, digits, '.', '_' or '-' (at most 64), got"
                           f" {show(value)}")
    return value


def _whole(value: object, path: str, lo: int, hi: int, unit: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise LabFileError(f"{path}: expected a whole number of {unit} from {lo} to {hi}, got {show(value)}")
    return value


def _choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise LabFileError(f"{path}: expected one of {', '.join(choices)}, got {show(value)}")
    return str(value)


def _image_file(value: object, path: str, base_dir: Path | None) -> Path:
    if not isinstance(value, str) or not value or "\n" in value or "\0" in value:
        raise LabFileError(f"{path}: expected the path of an image file in the lab's folder, got {show(value)}")
    if base_dir is None:
        raise LabFileError(f"{path}: image files come with a lab.yaml", hint="use url: for a lab without a folder")
    folder = base_dir.resolve()
    file = (base_dir / Path(value).expanduser()).resolve()
    if not file.is_relative_to(folder):
        raise LabFileError(f"{path}: {value} is outside the lab's folder {folder}",
                           hint="copy the image into the lab's folder (its machines' users would read any file"
                                " it names)")
    if not file.is_file():
        raise LabFileError(f"{path}: no image file {file}", hint="make or copy it there, or use url:")
    return file


def _image(raw: object, path: str, base_dir: Path | None, before: dict[str, Image]) -> Image:
    data = _mapping(raw, path, ("name", "file", "url", "disk_format", "container_format", "kernel", "ramdisk",
                                "properties"))
    name = _name(data.get("name"), f"{path}.name")
    if name in before:
        raise LabFileError(f"{path}.name: image {name!r} is listed twice")
    if ("file" in data) == ("url" in data):
        raise LabFileError(f"{path}: give file: (in the lab's folder) or url:, one of them")
    file = _image_file(data["file"], f"{path}.file", base_dir) if "file" in data else None
    url = None
    if "url" in data:
        if not isinstance(data["url"], str) or not _URL_RE.match(data["url"]):
            raise LabFileError(f"{path}.url: expected an http:// or https:// URL, got {show(data['url'])}")
        url = data["url"]
    links = {}
    for key, fmt in (("kernel", "aki"), ("ramdisk", "ari")):
        if key in data:
            target = _name(data[key], f"{path}.{key}")
            if target not in before:
                raise LabFileError(f"{path}.{key}: {target!r} is no image listed before this one",
                                   hint=f"list the {key} image first, with disk_format: {fmt}")
            links[key] = target
    properties = []
    raw_properties = data.get("properties") or {}
    if not isinstance(raw_properties, dict):
        raise LabFileError(f"{path}.properties: expected a mapping, got {type(raw_properties).__name__}")
    for key, value in raw_properties.items():
        if not isinstance(key, str) or not _PROPERTY_RE.match(key):
            raise LabFileError(f"{path}.properties: invalid property name {show(key)}")
        if key in ("kernel_id", "ramdisk_id"):
            raise LabFileError(f"{path}.properties.{key}: set by labctl", hint=f"use {key[:-3]}: with the image's name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int)) or len(str(value)) > 255 or any(c in str(value) for c in "\n\r\0"):
            raise LabFileError(f"{path}.properties.{key}: expected one line of at most 255 characters,"
                               f" got {show(value)}")
        properties.append((key, str(value)))
    return Image(name, _choice(data.get("disk_format"), f"{path}.disk_format", DISK_FORMATS),
                 _choice(data.get("container_format", "bare"), f"{path}.container_format", CONTAINER_FORMATS),
                 file, url, links.get("kernel"), links.get("ramdisk"), tuple(properties))


def _flavor(raw: object, path: str) -> Flavor:
    data = _mapping(raw, path, ("name", "ram", "disk", "vcpus"))
    return Flavor(_name(data.get("name"), f"{path}.name"), _whole(data.get("ram"), f"{path}.ram", 64, 1 << 20, "MiB"),
                  _whole(data.get("disk", 0), f"{path}.disk", 0, 1 << 16, "GB"),
                  _whole(data.get("vcpus", 1), f"{path}.vcpus", 1, 256, "CPUs"))


def _keypair(raw: object) -> Keypair:
    if raw == LABCTL_KEYPAIR:
        return Keypair(LABCTL_KEYPAIR)
    if not isinstance(raw, dict):
        raise LabFileError(f"cloud.keypair: expected `labctl` or {{name: ..., public_key: ...}}, got {show(raw)}")
    data = _mapping(raw, "cloud.keypair", ("name", "public_key"))
    name = _name(data.get("name"), "cloud.keypair.name")
    key = data.get("public_key")
    if key is None:
        return Keypair(name)
    if not isinstance(key, str) or not _KEY_RE.match(key.strip()):
        raise LabFileError(f"cloud.keypair.public_key: expected one OpenSSH public key line, got {show(key)}",
                           hint="paste the line of your ~/.ssh/id_ed25519.pub")
    return Keypair(name, key.strip())


def _rule(raw: object, path: str) -> Rule:
    if raw in RULE_NAMES:
        protocol, port = RULE_NAMES[raw]
        return Rule(protocol, port)
    m = _RULE_RE.match(raw) if isinstance(raw, str) else None
    if not m or not 1 <= int(m[2]) <= 65535:
        raise LabFileError(f"{path}: expected {', '.join(RULE_NAMES)}, tcp/PORT or udp/PORT, got {show(raw)}")
    return Rule(m[1], int(m[2]))


def parse_cloud(raw: object, base_dir: Path | None) -> CloudSpec:
    if raw is None:
        return CloudSpec()
    data = _mapping(raw, "cloud", ("images", "flavors", "keypair", "security_group_rules"))
    images: dict[str, Image] = {}
    for i, item in enumerate(_list(data.get("images"), "cloud.images")):
        image = _image(item, f"cloud.images[{i}]", base_dir, images)
        images[image.name] = image
    for image in images.values():
        for target, fmt in ((image.kernel, "aki"), (image.ramdisk, "ari")):
            if target and images[target].disk_format != fmt:
                raise LabFileError(f"cloud.images: {image.name} boots {target!r}, whose disk_format is"
                                   f" {images[target].disk_format}, not {fmt}")
    flavors = [_flavor(item, f"cloud.flavors[{i}]")
               for i, item in enumerate(_list(data.get("flavors"), "cloud.flavors"))]
    if len({f.name for f in flavors}) != len(flavors):
        raise LabFileError("cloud.flavors: a flavor name is listed twice")
    rules = [_rule(item, f"cloud.security_group_rules[{i}]")
             for i, item in enumerate(_list(data.get("security_group_rules"), "cloud.security_group_rules"))]
    keypair = _keypair(data["keypair"]) if data.get("keypair") is not None else None
    return CloudSpec(tuple(images.values()), tuple(flavors), keypair, tuple(dict.fromkeys(rules)))
