#!/bin/sh
# Guest configuration of the Vagrant box, run by mmdebstrap as a customize hook.
# $1 is the finished root filesystem, $2 Vagrant's public "insecure" key (Vagrant replaces it
# with a key of its own on the first `vagrant up`). See HOST-NOTES section 2.
set -eu
root="$1"
pubkey="$2"
# the system container's hook shares its host-key setup with this box
. "$(dirname "$0")/../container/rootfs/host-keys.sh"

cat > "$root/etc/fstab" <<'EOF'
LABEL=vagrant-root  /  ext4  errors=remount-ro  0  1
EOF

# eth0 by DHCP (net.ifnames=0 is on the kernel command line in extlinux.conf).
cat > "$root/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF

echo labctl-host > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'EOF'
127.0.0.1   localhost
127.0.1.1   labctl-host
::1         localhost ip6-localhost ip6-loopback
EOF

# No NTP server is reachable from a classroom without internet, and the apt timers would
# take the dpkg lock in the middle of provisioning.
for unit in systemd-timesyncd.service apt-daily.service apt-daily.timer \
    apt-daily-upgrade.service apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# Package triggers rebuild the initramfs during provisioning, inside the VM (under TCG on a
# host without KVM that took 12 min with all modules): only the drivers this machine uses.
echo 'MODULES=dep' > "$root/etc/initramfs-tools/conf.d/labctl-box"

# A throwaway VM's disk: dpkg need not fsync every file (provisioning installs ~1 GB).
echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/labctl-box"

# The vagrant user: Vagrant's key, sudo without a password (the convention every box follows).
chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
sed -i 's/^vagrant:[^:]*:/vagrant:*:/' "$root/etc/shadow"
[ "$(chroot "$root" id -u vagrant)" = 1000 ] || { echo "vagrant is not uid 1000" >&2; exit 1; }
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$pubkey" "$root/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"

cat > "$root/etc/ssh/sshd_config.d/vagrant.conf" <<'EOF'
# Keys only, and no reverse DNS look-up that would stall every login without a resolver.
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF

# Host keys are made on each machine's first boot, so two machines never share them.
fresh_host_keys "$root"

# Per-machine identity: systemd makes a machine-id on first boot; dhclient writes
# resolv.conf. mmdebstrap copied the build host's resolv.conf in.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/etc/resolv.conf"
