# Sourced by the customize hooks of the system container (customize.sh, beside it) and of the
# Vagrant box (images/vagrant/customize.sh). It lives in this recipe's folder so that the
# container image's recipe hash covers it.

# fresh_host_keys ROOT: the image holds no SSH host keys (openssh-server's postinst made them,
# named after the build host); each machine makes its own at its first start, so clones of
# one image never share them.
fresh_host_keys() {
    rm -f "$1"/etc/ssh/ssh_host_*
    mkdir -p "$1/etc/systemd/system/ssh.service.d"
    cat > "$1/etc/systemd/system/ssh.service.d/labctl-hostkeys.conf" <<'CONF'
[Service]
# The list is reset so the keys exist before Debian's own "sshd -t" runs.
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
CONF
}
