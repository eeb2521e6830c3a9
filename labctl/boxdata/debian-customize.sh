#!/bin/sh
# Turn an mmdebstrap root filesystem into a Vagrant box's: run by mmdebstrap's customize hook as
#   debian-customize.sh ROOTFS INSECURE_PUBLIC_KEY
set -eu
root=$1
key=$2

# The vagrant user: Vagrant's insecure key (swapped for a fresh one at first `vagrant up`) and
# passwordless sudo, as every Vagrant box has.
chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
install -d -m 0700 -o 0 -g 0 "$root/home/vagrant/.ssh"
install -m 0600 "$key" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
printf 'vagrant ALL=(ALL) NOPASSWD:ALL\n' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
printf 'root:vagrant\n' | chroot "$root" chpasswd

# DHCP on the first interfaces (whatever their names), with DNS from the DHCP server.
cat > "$root/etc/systemd/network/80-labctl-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
chroot "$root" systemctl enable systemd-networkd systemd-resolved
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# Each VM must get its own identity: machine-id (DHCP client ids derive from it) and SSH host keys,
# made at first boot.
: > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys at first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable ssh-hostkeys.service ssh.service
# Vagrant waits on SSH: do not wait for reverse DNS of the host.
printf 'UseDNS no\n' > "$root/etc/ssh/sshd_config.d/labctl.conf"

# Labs ask for bigger disks than the box's: grow the filesystem to its disk at every boot (a no-op
# once it fills it).
cat > "$root/etc/systemd/system/labctl-growfs.service" <<'UNIT'
[Unit]
Description=Grow the root filesystem to the size of its disk

[Service]
Type=oneshot
ExecStart=/sbin/resize2fs /dev/vda

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable labctl-growfs.service

# The whole disk is one ext4 filesystem: no partitions to find, extlinux in its boot sector.
printf '/dev/vda / ext4 errors=remount-ro 0 1\n' > "$root/etc/fstab"
kernel=$(cd "$root/boot" && ls vmlinuz-* | sort -V | tail -n 1)
initrd=$(cd "$root/boot" && ls initrd.img-* | sort -V | tail -n 1)
mkdir -p "$root/boot/extlinux"
cat > "$root/boot/extlinux/extlinux.conf" <<CONF
DEFAULT debian
TIMEOUT 0
LABEL debian
  LINUX /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=/dev/vda rw console=tty0 console=ttyS0,115200n8 net.ifnames=0
CONF
echo labctl-box > "$root/etc/hostname"

# A DevStack-ready box (labctl.devstack_packages) holds services whose packages make secrets or
# identities at install time: every VM must make its own, never share the box's. RabbitMQ's Erlang
# cookie and node database, Open vSwitch's database and system-id (OVN's chassis), OVN's databases,
# the snakeoil TLS key (made again at first boot), systemd's random seed, D-Bus's machine-id copy.
rm -rf "$root/var/lib/rabbitmq/.erlang.cookie" "$root/var/lib/rabbitmq/mnesia" \
    "$root/etc/openvswitch/conf.db" "$root/etc/openvswitch/system-id.conf" "$root"/var/lib/openvswitch/*.db \
    "$root"/var/lib/ovn/*.db "$root"/etc/ovn/*.db "$root/var/lib/systemd/random-seed" "$root/var/lib/dbus/machine-id"
if [ -e "$root/etc/ssl/private/ssl-cert-snakeoil.key" ]; then
    rm -f "$root/etc/ssl/private/ssl-cert-snakeoil.key" "$root/etc/ssl/certs/ssl-cert-snakeoil.pem"
    cat > "$root/etc/systemd/system/labctl-snakeoil.service" <<'UNIT'
[Unit]
Description=Make this machine's own snakeoil TLS key
Before=apache2.service
ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key

[Service]
Type=oneshot
ExecStart=/usr/sbin/make-ssl-cert generate-default-snakeoil --force-overwrite

[Install]
WantedBy=multi-user.target
UNIT
    chroot "$root" systemctl enable labctl-snakeoil.service
fi
# Services that take the host's name when they first start (RabbitMQ's node, Open vSwitch's and OVN's
# hostname) wait until the machine has its own: not under the box's name at its first boot.
for unit in rabbitmq-server openvswitch-switch ovs-vswitchd ovsdb-server ovn-central ovn-host ovn-northd \
        ovn-controller ovn-ovsdb-server-nb ovn-ovsdb-server-sb; do
    if [ -e "$root/lib/systemd/system/$unit.service" ]; then
        mkdir -p "$root/etc/systemd/system/$unit.service.d"
        printf '[Unit]\nConditionHost=!labctl-box\n' > "$root/etc/systemd/system/$unit.service.d/labctl-named.conf"
    fi
done
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
