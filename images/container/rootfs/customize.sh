#!/bin/sh
# Guest configuration of the system container, run by mmdebstrap as a customize hook.
# $1 is the finished root filesystem (before it is packed). See HOST-NOTES section 2.
set -eu
root="$1"
. "$(dirname "$0")/host-keys.sh"

# eth0 by DHCP through ifupdown. "auto", not "allow-hotplug": there is no udev in a
# container to send the hotplug event, networking.service must bring it up itself.
cat > "$root/etc/network/interfaces" <<'EOF'
# labctl: the container's NIC (eth0 on the lab bridge) gets its address by DHCP.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF

# Units that are useless or fail in a container: the clock and binfmt belong to the host,
# the apt timers would take the dpkg lock while a student or a check uses apt.
for unit in systemd-timesyncd.service systemd-binfmt.service \
    proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
    apt-daily.service apt-daily.timer apt-daily-upgrade.service apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# SSH: keys only. Drop-ins come first in sshd_config, and the first value wins.
cat > "$root/etc/ssh/sshd_config.d/labctl.conf" <<'EOF'
# labctl: log in with the lab key; there are no passwords in this image.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF

# Host keys are made per container on first start, so clones do not share them.
fresh_host_keys "$root"

# No passwords: root logs in with a key only ("*" matches no password).
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"
mkdir -p "$root/root/.ssh"
chmod 0700 "$root/root/.ssh"

# Per-instance identity: systemd makes a machine-id on first boot, LXD writes the hostname
# from the image's templates, dhclient writes resolv.conf. mmdebstrap copied the build
# host's resolv.conf and hostname in; they must not leak into guests.
: > "$root/etc/machine-id"
if [ -d "$root/var/lib/dbus" ]; then
    ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"
fi
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"

cat > "$root/etc/motd" <<'EOF'

  labctl system container: its own init (systemd), users and network stack,
  but the kernel is the host's. Compare `uname -r` here and on the host.

EOF
