"""labctl: DevStack labs on libvirt virtual machines, in one command."""

__version__ = "0.1.0"
