#!/bin/sh
# Tidying of the Docker base rootfs, run by mmdebstrap as a customize hook ($1: the rootfs).
# The same kind of tweaks Debian's official images make: a container has no init to start
# services, and the engine provides hostname, hosts and resolv.conf at run time.
set -eu
root="$1"

# Package scripts must not try to start services inside a container or a build.
cat > "$root/usr/sbin/policy-rc.d" <<'POLICY'
#!/bin/sh
exit 101
POLICY
chmod 0755 "$root/usr/sbin/policy-rc.d"

# `apt-get install` in a Dockerfile should not keep .deb files in the layer.
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
APT
# apt's binary caches (~70 MB) are rebuilt by the first apt-get update anyway.
rm -f "$root"/var/cache/apt/*.bin

# Copied from the build host by mmdebstrap; the engine bind-mounts its own at run time.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
: > "$root/etc/machine-id"
