#!/usr/bin/env bash
# The real `vagrant up --provider=libvirt` of the Vagrantfile, timed, then `vagrant destroy`,
# checking that libvirt holds afterwards exactly what it held before. Manual (it takes from
# ~10 min with KVM to over an hour under TCG); CI only runs `vagrant validate`.
#
#   sudo bench/vagrant_up.sh                                      # everything: host, images, lab
#   sudo bench/vagrant_up.sh --provision-with ansible-core,host-setup   # only the host playbook
#
# Arguments go to `vagrant up`. The box is LABCTL_BOX (default here labctl/debian12, built
# by images/vagrant/build-box.sh when Vagrant does not have it). LABCTL_VM_MEMORY,
# LABCTL_VM_CPUS, LABCTL_VAGRANT_DRIVER and LABCTL_READY_TIMEOUT pass through to the Vagrantfile;
# LABCTL_VAGRANT_CA_CERTS defaults to $PIP_CERT when that is set.
# The log, with a timestamp on every line, goes to bench/results/vagrant-up-<time>.log.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

die() { echo "Error: $1" >&2; [ -n "${2:-}" ] && echo "Hint: $2" >&2; exit "${3:-1}"; }
[ "$(id -u)" = 0 ] || die "needs root (libvirt's system instance, box build)" "sudo $0"
command -v vagrant > /dev/null || die "vagrant is not installed" "apt-get install vagrant vagrant-libvirt"
vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt \
  || die "the vagrant-libvirt plugin is missing" "apt-get install vagrant-libvirt"

export LABCTL_BOX="${LABCTL_BOX:-labctl/debian12}"
# pip inside the VM must trust what pip here trusts (e.g. the CA of a TLS-inspecting proxy).
if [ -z "${LABCTL_VAGRANT_CA_CERTS:-}" ] && [ -n "${PIP_CERT:-}" ]; then
  export LABCTL_VAGRANT_CA_CERTS="$PIP_CERT"
fi
export VAGRANT_DEFAULT_PROVIDER=libvirt
# Vagrant's machine state outside the checkout, so the run leaves the work tree as it was.
VAGRANT_DOTFILE_PATH="$(mktemp -d /var/tmp/labctl-vagrant.XXXXXX)"
export VAGRANT_DOTFILE_PATH
mkdir -p bench/results
log="bench/results/vagrant-up-$(date +%Y%m%d-%H%M%S).log"
virsh() { command virsh -c qemu:///system "$@"; }

# Everything libvirt holds that is not another lab's (labctl-*: other instances come and go
# while this runs), plus the bridges.
snapshot() {
  echo "domains: $(virsh list --all --name | grep -v '^labctl-' | sort | xargs)"
  echo "networks: $(virsh net-list --all --name | grep -v '^labctl-' | sort | xargs)"
  echo "default network: $(virsh net-info default 2>/dev/null | awk '/Active|Persistent/ {printf "%s ", $0}')"
  for pool in $(virsh pool-list --all --name); do
    echo "pool $pool: $(virsh vol-list "$pool" 2>/dev/null | awk 'NR > 2 && $1 {print $1}' | sort | xargs)"
  done
  echo "bridges: $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep '^virbr' | sort | xargs)"
}

stamp() { while IFS= read -r line; do printf '%6ds %s\n' "$((SECONDS - t0))" "$line"; done; }

if ! vagrant box list 2>/dev/null | grep -q "^$LABCTL_BOX "; then
  [ "$LABCTL_BOX" = labctl/debian12 ] || die "box $LABCTL_BOX is not added" "vagrant box add it first"
  echo "▸ building the box $LABCTL_BOX"
  images/vagrant/build-box.sh
fi
pools_before="$(virsh pool-list --all --name | sort | xargs)"
before="$(snapshot)"

status=0
t0=$SECONDS
finish() {
  local up_s=$((SECONDS - t0))
  echo "▸ vagrant destroy -f" | tee -a "$log"
  local d0=$SECONDS
  vagrant destroy -f 2>&1 | stamp >> "$log" || true
  local destroy_s=$((SECONDS - d0))
  # vagrant-libvirt keeps the box's base image in the storage pool (and creates the `default`
  # pool when there is none): remove what this run added, so the host is as it was.
  for pool in $(virsh pool-list --all --name); do
    for vol in $(virsh vol-list "$pool" 2>/dev/null | awk 'NR > 2 && $1 {print $1}'); do
      case "$vol" in *_vagrant_box_image_*) grep -q "$vol" <<< "$before" || virsh vol-delete --pool "$pool" "$vol" > /dev/null;; esac
    done
    if ! grep -qw "$pool" <<< "$pools_before"; then
      virsh pool-destroy "$pool" > /dev/null 2>&1 || true
      virsh pool-undefine "$pool" > /dev/null
    fi
  done
  rm -rf "$VAGRANT_DOTFILE_PATH"
  after="$(snapshot)"
  echo "up (and checks): ${up_s} s; destroy: ${destroy_s} s; log: $log"
  if [ "$before" = "$after" ]; then
    echo "libvirt holds what it held before:"; sed 's/^/  /' <<< "$after"
  else
    echo "libvirt differs from before:"; diff <(echo "$before") <(echo "$after") || true
    status=1
  fi
  exit "$status"
}
trap finish EXIT

echo "▸ vagrant up --provider=libvirt $* (box $LABCTL_BOX; log: $log)"
set +e
vagrant up --provider=libvirt "$@" 2>&1 | stamp | tee "$log" \
  | grep --line-buffered -E '^ *[0-9]+s +(labhost: +)?(==>|TASK \[|PLAY RECAP|fatal:|▸|Error|Hint|host set up|[a-z-]+ +(built|done|failed|ready))'
up_rc="${PIPESTATUS[0]}"
set -e
[ "$up_rc" = 0 ] || status=1
echo "▸ inside: labctl status and doctor (or the engines, if the lab step did not run)" | tee -a "$log"
vagrant ssh -c 'if [ -x /vagrant/.venv/bin/labctl ]; then
    sudo /vagrant/.venv/bin/labctl status; sudo /vagrant/.venv/bin/labctl doctor
  else
    sudo virsh -c qemu:///system version && sudo docker version --format "Docker {{.Server.Version}}" \
      && sudo lxc profile show default
  fi' 2>&1 | stamp | tee -a "$log" || status=1
