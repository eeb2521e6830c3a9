"""Facts about the host that shape a lab: CPUs, memory, which accelerator guests can use, and which
libvirt to talk to (and how to start it here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Accelerator:
    """How guests run: `driver` and CPU settings are vagrant-libvirt's provider options."""

    name: str            # "kvm" or "qemu" (software emulation, TCG)
    driver: str
    cpu_mode: str
    cpu_model: str | None
    reason: str

    @property
    def slow(self) -> bool:
        return self.name == "qemu"


DEFAULT_LIBVIRT_URI = "qemu:///system"


def default_uri() -> str:
    """The libvirt of this command: LABCTL_LIBVIRT_URI, else the system's."""
    return os.environ.get("LABCTL_LIBVIRT_URI") or DEFAULT_LIBVIRT_URI


def start_hint() -> str:
    """How to start libvirtd on this machine."""
    if Path("/run/systemd/system").is_dir():
        return "start it: sudo systemctl start libvirtd"
    # PID 1 is not systemd (containers, WSL, some CI): nothing starts daemons by itself.
    return "start it (no systemd here): sudo virtlogd -d && sudo libvirtd -d"


KVM = Accelerator("kvm", "kvm", "host-passthrough", None, "")
QEMU = Accelerator("qemu", "qemu", "custom", "qemu64", "")


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory_mb: int
    cpu_flags: frozenset[str]
    kvm_usable: bool
    # The KVM module lets guests run KVM of their own (kvm_intel's or kvm_amd's `nested` parameter).
    nested_kvm: bool = False


def nested_kvm(sys: Path = Path("/sys")) -> bool:
    for module in ("kvm_intel", "kvm_amd"):
        try:
            if (sys / "module" / module / "parameters" / "nested").read_text().strip() in ("Y", "1"):
                return True
        except OSError:
            continue
    return False


def check_nested(accel: Accelerator, host: HostFacts) -> None:
    """A lab with `nested: true` runs only where its machines can run KVM themselves; else it is
    refused with the reason (Nova's guests would silently fall back to nothing: LIBVIRT_TYPE=kvm
    without /dev/kvm in the machine fails every boot)."""
    from labctl.errors import LabctlError

    if accel.slow:
        raise LabctlError(f"nested: KVM inside the machines needs KVM for the machines first, and here {accel.reason}",
                          hint="drop nested: (Nova's guests then run under QEMU inside the machines: slow, but"
                               " they run)")
    if not host.nested_kvm:
        raise LabctlError("nested: this host's KVM does not let guests run KVM of their own (kvm_intel's or"
                          " kvm_amd's nested parameter is off)",
                          hint="enable it with no VM running: echo 'options kvm_intel nested=1' | sudo tee"
                               " /etc/modprobe.d/kvm-nested.conf && sudo modprobe -r kvm_intel && sudo modprobe"
                               " kvm_intel (kvm_amd on AMD); or drop nested:")


def read_host(proc: Path = Path("/proc"), dev_kvm: Path = Path("/dev/kvm"), sys: Path = Path("/sys")) -> HostFacts:
    flags: set[str] = set()
    memory_kb = 0
    try:
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass  # Not Linux, or /proc hidden: the facts stay unknown (0), callers say so.
    kvm_usable = dev_kvm.exists() and os.access(dev_kvm, os.R_OK | os.W_OK)
    return HostFacts(os.cpu_count() or 1, memory_kb // 1024, frozenset(flags), kvm_usable, nested_kvm(sys))


def choose_accelerator(wanted: str, host: HostFacts) -> Accelerator:
    """KVM only where guests can really run under it; otherwise software emulation, with why.

    /dev/kvm can exist and open while the CPU offers no virtualisation (nested KVM without vmx/svm):
    guests then die with "KVM internal error", so the CPU flags decide, not the device alone.
    """
    has_vt = bool(host.cpu_flags & {"vmx", "svm"})
    if wanted == "qemu":
        return _why(QEMU, "software emulation was asked for (accelerator: qemu)")
    if wanted == "kvm":
        return _why(KVM, "KVM was asked for (accelerator: kvm)")
    if has_vt and host.kvm_usable:
        return _why(KVM, "the CPU offers virtualisation (vmx/svm) and /dev/kvm is usable")
    if not has_vt:
        return _why(QEMU, "the CPU offers no vmx/svm flag, so KVM guests cannot run: using software"
                          " emulation (slow)")
    return _why(QEMU, "/dev/kvm is missing or not writable by you: using software emulation (slow);"
                      " add yourself to the kvm group to use KVM")


def _why(accel: Accelerator, reason: str) -> Accelerator:
    return replace(accel, reason=reason)


def local_ipv4(proc: Path = Path("/proc")) -> list[str]:
    """This machine's own IPv4 addresses (loopback aside), from the kernel's routing table."""
    try:
        text = (proc / "net" / "fib_trie").read_text()
    except OSError:
        return []
    return local_addresses_of(text)


def local_addresses_of(fib_trie: str) -> list[str]:
    """The addresses /proc/net/fib_trie marks `/32 host LOCAL`: each follows its `|-- a.b.c.d` line."""
    found: list[str] = []
    last = ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|-- "):
            last = text[4:]
        elif text == "/32 host LOCAL" and last and not last.startswith("127.") and last not in found:
            found.append(last)
    return found
