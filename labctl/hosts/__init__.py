"""Several hypervisor hosts: the inventory (hosts.yaml), each host's room, and the placement of a
lab's machines across them. Pure, except where it asks a Hypervisor (the libvirt adapter)."""
