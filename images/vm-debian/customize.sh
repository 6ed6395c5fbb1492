#!/bin/sh
# Guest configuration of the Debian VM images, run by mmdebstrap as a customize hook once
# every package is installed and configured. $1 is the root filesystem. The per-instance part
# (hostname, address, key, apt proxy) is done at boot by /usr/local/sbin/labctl-setup from the
# kernel command line; the image itself is the same for every guest.
set -eu
root="$1"
here="$(dirname "$0")"

# Our files: the boot-time setup, its units, sshd's drop-in.
cp -R "$here/rootfs/." "$root/"
chmod 0755 "$root/usr/local/sbin/labctl-setup" "$root/usr/local/sbin/labctl-clone"
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
ln -sf /etc/systemd/system/labctl-setup.service \
    "$root/etc/systemd/system/sysinit.target.wants/labctl-setup.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
for unit in labctl-ready.service labctl-clone.service; do
    ln -sf "/etc/systemd/system/$unit" "$root/etc/systemd/system/multi-user.target.wants/$unit"
done

# Units a lab VM does not need, masked so the boot does not wait for them: clock sync (the
# host keeps the clock), the apt timers (they would take the dpkg lock while a student or a
# check uses apt), disk checks and trims, waiting for "network online", the text console on
# the (absent) screen. The serial console keeps its login prompt.
# binfmt_misc (foreign programs through an emulator) is the lab host's business, not a guest's.
for unit in systemd-timesyncd.service systemd-networkd-wait-online.service \
    apt-daily.service apt-daily.timer apt-daily-upgrade.service apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    getty@tty1.service \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
    modprobe@drm.service modprobe@efi_pstore.service modprobe@dm_mod.service \
    sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# Drivers udev would load for hardware a lab VM has but does not use: nested KVM (the CPU may
# offer it), the PC speaker, PS/2 mouse, floppy, SMBus. `modprobe NAME` still loads any of them.
cat > "$root/etc/modprobe.d/labctl-vm.conf" <<'MODPROBE'
# labctl: not loaded at boot (udev), still there for `modprobe`
blacklist kvm
blacklist kvm_amd
blacklist kvm_intel
blacklist ccp
blacklist pcspkr
blacklist psmouse
blacklist floppy
blacklist serio_raw
blacklist i2c_piix4
MODPROBE

# sshd's own config check (ssh.service's ExecStartPre) runs again at every boot: the image's
# config was checked when it was built (below).
mkdir -p "$root/run/sshd"
chroot "$root" /usr/sbin/sshd -t
# openssh-server's postinst made host keys here, named after the build host, and every guest
# would share them: each guest makes its own at boot instead (labctl-setup, ed25519).
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat > "$root/etc/systemd/system/ssh.service.d/labctl.conf" <<'SSHD'
[Service]
ExecStartPre=
SSHD

# The root filesystem by label, never checked at boot (fsck pass 0).
cat > "$root/etc/fstab" <<'FSTAB'
# labctl VM: one ext4 root filesystem, a qcow2 overlay per guest
LABEL=labctl-root  /  ext4  defaults,noatime  0  0
FSTAB

# No passwords: root logs in with the lab key only ("*" matches no password). The serial
# console still shows a login prompt: a key is needed to get in through SSH, a password set
# from inside (passwd) to log in on the console.
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"
mkdir -p "$root/root/.ssh"
chmod 0700 "$root/root/.ssh"

# Per-instance identity: systemd makes a machine-id on first boot; labctl-setup writes the
# hostname and resolv.conf. mmdebstrap copied the build host's in; they must not leak.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"
echo labctl-vm > "$root/etc/hostname"
: > "$root/etc/resolv.conf"

# Every guest boots a fresh overlay of this disk: without these stamps systemd would think
# /usr had just been updated and run ldconfig, the journal catalog and more at every first
# boot (ConditionNeedsUpdate).
touch "$root/etc/.updated" "$root/var/.updated"

cat > "$root/etc/motd" <<'MOTD'

  labctl virtual machine: its own kernel, its own devices, its own init (systemd).
  Compare `uname -r`, `lspci` and `systemd-analyze` here and in the system container.

MOTD
