#!/usr/bin/env bash
# Build the local Vagrant box `labctl/debian12` for the libvirt provider from Debian packages,
# for hosts that cannot download `debian/bookworm64` (no Vagrant Cloud), and add it to Vagrant.
#
#   sudo images/vagrant/build-box.sh [BOX_FILE]       then: LABCTL_BOX=labctl/debian12 vagrant up
#
# A plain Debian 12 (systemd, sudo, python3, openssh, rsync, the vagrant user with Vagrant's
# insecure key) on one ext4 partition booted by extlinux: a normal, bootable disk. The lab's
# own VM images (images/vm) cannot serve as a box: busybox init, no apt, no python, no sudo.
# Takes ~3-4 min on 2 cores; needs ~3 GiB in /var/tmp while it runs.
# Environment: LABCTL_MIRROR (Debian mirror), LABCTL_BOX_NAME (labctl/debian12),
# LABCTL_BOX_GB (virtual disk size, 24).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

die() { echo "Error: $1" >&2; [ -n "${2:-}" ] && echo "Hint: $2" >&2; exit "${3:-1}"; }

box_name="${LABCTL_BOX_NAME:-labctl/debian12}"
box_gb="${LABCTL_BOX_GB:-24}"
mirror="${LABCTL_MIRROR:-http://deb.debian.org/debian}"
out="${1:-/var/cache/labctl/vagrant/${box_name//\//-}.box}"
label=vagrant-root

[ "$(id -u)" = 0 ] || die "building a box needs root (mmdebstrap, loop devices, mount)" "sudo $0"

# Host tools: mmdebstrap and the disk tools, installed if missing (Debian packages only).
tools=(mmdebstrap qemu-utils fdisk e2fsprogs extlinux syslinux-common)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "▸ installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    >/dev/null || die "could not install ${missing[*]}" "run apt-get update, then this again"
fi

# Vagrant's public insecure key, from the installed Vagrant (Debian's or HashiCorp's package).
pubkey="$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
  /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -n 1 || true)"
[ -n "$pubkey" ] || die "Vagrant's insecure public key (keys/vagrant.pub) not found" \
  "apt-get install vagrant"

work="$(mktemp -d /var/tmp/labctl-box.XXXXXX)"
loop=""
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

t0=$SECONDS
echo "▸ Debian bookworm root filesystem (mmdebstrap)"
packages="$(sed 's/#.*//' "$here/packages.txt" | xargs | tr ' ' ,)"
mmdebstrap --variant=minbase --mode=root --quiet \
  --aptopt='Acquire::Retries "3"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --include="$packages" \
  --customize-hook="$here/customize.sh \"\$1\" $(printf %q "$pubkey")" \
  bookworm "$work/rootfs" "$mirror"

kernel="$(cd "$work/rootfs/boot" && ls vmlinuz-* | sort -V | tail -n 1)"
version="${kernel#vmlinuz-}"
[ -e "$work/rootfs/boot/initrd.img-$version" ] || die "no initrd for $kernel in the rootfs"
mkdir -p "$work/rootfs/boot/extlinux"
cat > "$work/rootfs/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 1
PROMPT 0
LABEL debian
  LINUX /boot/vmlinuz-$version
  INITRD /boot/initrd.img-$version
  APPEND root=LABEL=$label ro console=tty0 console=ttyS0,115200 net.ifnames=0 biosdevname=0
EOF
echo "  rootfs in $((SECONDS - t0)) s ($(du -sh "$work/rootfs" | cut -f1)), kernel $version"

echo "▸ disk: MBR, one ext4 partition, extlinux"
disk="$work/box.raw"
truncate -s "${box_gb}G" "$disk"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk --quiet "$disk"
# extlinux reads the partition's offset from the block device, so it needs a real partition
# device: a loop device with partition scanning.
loop="$(losetup --find --show --partscan "$disk")"
for _ in $(seq 1 50); do [ -b "${loop}p1" ] && break; partx -a "$loop" 2>/dev/null || true; sleep 0.1; done
[ -b "${loop}p1" ] || die "${loop}p1 did not appear" "the kernel's loop driver needs partition support"
# syslinux cannot read ext4's 64bit and metadata_csum_seed features
mkfs.ext4 -q -L "$label" -O ^64bit,^metadata_csum_seed -d "$work/rootfs" "${loop}p1"
mkdir -p "$work/mnt"
mount "${loop}p1" "$work/mnt"
extlinux --install "$work/mnt/boot/extlinux"
umount "$work/mnt"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$loop" bs=440 count=1 conv=notrunc status=none
losetup -d "$loop"; loop=""
rm -rf "$work/rootfs"

echo "▸ box: qcow2 + metadata.json + Vagrantfile"
qemu-img convert -O qcow2 "$disk" "$work/box.img"
rm -f "$disk"
cat > "$work/metadata.json" <<EOF
{"provider": "libvirt", "format": "qcow2", "virtual_size": $box_gb}
EOF
cat > "$work/Vagrantfile" <<'EOF'
# Box defaults: virtio disk and NIC. The project's Vagrantfile sets everything else.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
end
EOF
mkdir -p "$(dirname "$out")"
tar -C "$work" -cf "$out.tmp" metadata.json Vagrantfile box.img
mv "$out.tmp" "$out"
echo "  $out ($(du -h "$out" | cut -f1)) in $((SECONDS - t0)) s"

# A catalog next to the box gives it a version (the build time), so Vagrant can tell a
# rebuilt box from the one a machine was created from.
version="12.$(date -u +%Y%m%d%H%M)"
cat > "$out.json" <<EOF
{"name": "$box_name", "versions": [{"version": "$version",
  "providers": [{"name": "libvirt", "url": "file://$(realpath "$out")"}]}]}
EOF
if command -v vagrant > /dev/null; then
  echo "▸ vagrant box add $box_name $version"
  vagrant box add --force "$out.json" > /dev/null
  # older builds, unless a machine still uses them
  vagrant box prune --name "$box_name" --keep-active-boxes --force > /dev/null
  echo "  added: LABCTL_BOX=$box_name vagrant up --provider=libvirt"
else
  echo "  add it with: vagrant box add $out.json"
fi
