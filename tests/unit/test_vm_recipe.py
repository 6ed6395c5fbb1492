"""The VM recipes' own logic: cpio writer, module closure, kernel command line, recipe lists."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from labctl.images import vm_debian
from labctl.images.debian import read_list, sources
from labctl.images.initramfs import Cpio, ModuleTree, module_name
from labctl.images.vm import ARCHES, RECIPE_DIR, GuestSettings, kernel_cmdline, recipes


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, data, rdev) for every entry of a newc archive, checking its framing."""
    entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        name_start = pos + 110
        name = data[name_start : name_start + f[11] - 1].decode()
        body = name_start + f[11] + (-(110 + f[11]) % 4)
        pos = body + f[6] + (-f[6] % 4)
        if name == "TRAILER!!!":
            assert pos == len(data)
            return entries
        entries[name] = (f[1], data[body : body + f[6]], (f[9], f[10]))


def test_cpio_writes_parents_first_and_every_kind_of_entry() -> None:
    raw = io.BytesIO()
    cpio = Cpio(raw)
    cpio.file("lib/modules/6.1/kernel/x.ko", b"abc", 0o644)
    cpio.symlink("bin/sh", "busybox")
    cpio.chardev("dev/console", 5, 1)
    cpio.file("init", b"#!/bin/sh\n", 0o755)
    cpio.close()
    entries = _read_newc(raw.getvalue())
    names = list(entries)
    assert (
        names.index("lib") < names.index("lib/modules") < names.index("lib/modules/6.1/kernel/x.ko")
    )
    assert entries["lib/modules/6.1/kernel/x.ko"][:2] == (0o100644, b"abc")
    assert entries["bin/sh"][:2] == (0o120777, b"busybox")
    assert entries["dev/console"][0] == 0o020600 and entries["dev/console"][2] == (5, 1)
    assert entries["init"][0] == 0o100755
    assert entries["lib"][0] == 0o040755


def test_module_closure_puts_dependencies_first(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\n"
        "kernel/lib/crc16.ko:\n"
        "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n"
        "kernel/arch/x86/crypto/crc32c-intel.ko:\n"
    )
    (tmp_path / "modules.builtin").write_text("kernel/drivers/tty/serial/8250.ko\n")
    tree = ModuleTree.read(tmp_path)
    order = tree.closure(["virtio-net", "ext4", "no_such_module", "crc32c_intel", "jbd2"])
    assert [module_name(p) for p in order] == [
        "failover",
        "virtio_net",
        "jbd2",
        "crc16",
        "ext4",
        "crc32c_intel",
    ]
    assert "8250" in tree.builtin


def test_kernel_cmdline_carries_the_contract() -> None:
    line = "ssh-ed25519 AAAAC3Nza test@host"
    args = kernel_cmdline(
        "arm64",
        GuestSettings(
            hostname="g1", authorized_key=line + "\n", address="10.0.0.5/24", gateway="10.0.0.1"
        ),
    ).split()
    assert args[:5] == ["root=LABEL=labctl-root", "rw", "console=ttyAMA0", "net.ifnames=0", "quiet"]
    values = dict(a.split("=", 1) for a in args if a.startswith("labctl."))
    assert values["labctl.hostname"] == "g1"
    assert values["labctl.ip"] == "10.0.0.5/24" and values["labctl.gw"] == "10.0.0.1"
    assert base64.b64decode(values["labctl.key"]).decode() == line
    dhcp = kernel_cmdline("amd64", GuestSettings(hostname="g2", authorized_key=line))
    assert "console=ttyS0" in dhcp and "labctl.ip=" not in dhcp


def test_recipes_differ_by_architecture_and_name_their_kernel() -> None:
    amd64, arm64 = recipes()
    assert (amd64.name, arm64.name) == ("vm-amd64-tiny", "vm-arm64-tiny")
    assert "linux-image-amd64" in amd64.inputs()["packages"]  # type: ignore[operator]
    assert "linux-image-arm64" in arm64.inputs()["packages"]  # type: ignore[operator]
    assert amd64.recipe_hash({}) != arm64.recipe_hash({})
    # the optional mainframe image (labctl.images.vm_s390x) adds s390x, with no tiny variant
    assert set(ARCHES) - {"s390x"} == {"amd64", "arm64"}


def test_recipe_lists_are_well_formed() -> None:
    for entry in read_list(RECIPE_DIR / "links.txt"):
        path, target = entry.split()
        assert not path.startswith("/") and not target.startswith("/"), entry
    for entry in read_list(RECIPE_DIR / "modules.txt"):
        name, *flags = entry.split()
        assert set(flags) <= {"boot"}, entry
    packages = read_list(RECIPE_DIR / "packages.txt")
    assert "linux-image-{arch}" in packages
    assert {"busybox-static", "openssh-server", "dash"} <= set(packages)


def test_debian_recipes_take_the_default_names_and_share_the_boot_files() -> None:
    amd64, arm64 = vm_debian.recipes()
    assert (amd64.name, arm64.name) == ("vm-amd64", "vm-arm64")
    assert amd64.recipe_hash({}) != arm64.recipe_hash({})
    inputs = amd64.inputs()
    # the shared initramfs files are part of the recipe: editing them rebuilds these images
    assert inputs["boot_files"] == vm_debian._boot_files_digest()
    assert inputs["initramfs_modules"] == recipes()[0].inputs()["modules"]
    tiny_hashes = {r.recipe_hash({}) for r in recipes()}
    assert not tiny_hashes & {amd64.recipe_hash({}), arm64.recipe_hash({})}


def test_debian_recipe_lists_are_well_formed() -> None:
    packages = vm_debian.recipes()[0].packages()
    # a complete system: init, package manager, admin tools, Ansible's interpreter
    assert {"systemd-sysv", "udev", "openssh-server", "sudo", "adduser", "python3"} <= set(packages)
    # the kernel is unpacked beside the rootfs, never installed (its postinst builds an initramfs)
    assert not [p for p in packages if p.startswith("linux-image")]
    for folder in vm_debian._dropped_modules():
        assert not folder.startswith("/") and ".." not in folder.split("/"), folder
    assert {"kernel", "virtio", "net/ipv4"}.isdisjoint(vm_debian._dropped_modules())


def test_debian_guest_setup_reads_every_key_of_the_command_line() -> None:
    """labctl-setup in the image handles each labctl.* key that kernel_cmdline can write."""
    script = (vm_debian.RECIPE_DIR / "rootfs/usr/local/sbin/labctl-setup").read_text()
    settings = GuestSettings(
        hostname="g",
        authorized_key="ssh-ed25519 AAAA k",
        address="10.0.0.5/24",
        gateway="10.0.0.1",
        dns="10.0.0.1",
        apt_proxy="http://10.0.0.1:3142",
        mac="52:54:00:00:00:01",
    )
    line = kernel_cmdline("amd64", settings)
    keys = {a.split("=", 1)[0] for a in line.split() if a.startswith("labctl.")}
    assert keys == {
        "labctl.hostname",
        "labctl.ip",
        "labctl.gw",
        "labctl.dns",
        "labctl.key",
        "labctl.apt_proxy",
        "labctl.mac",
    }
    for key in keys:
        assert f"{key}=*)" in script, key
    # what only a template's boot and its clones are given (labctl.backends.vm_templates)
    assert "labctl.template)" in script and "labctl.seed=*)" in script


def test_a_package_apt_cannot_find_is_named_with_its_list_line(tmp_path: Path) -> None:
    from labctl.images.debian import unknown_packages, where_listed

    output = (
        "I: running apt-get update...\nE: Unable to locate package nginx-lite\n"
        "E: Package 'linux-image-arm64' has no installation candidate\nE: apt download failed"
    )
    assert unknown_packages(output) == ["nginx-lite", "linux-image-arm64"]
    listing = tmp_path / "packages.txt"
    listing.write_text("# tools\nbash\nnginx-lite   # a web server\nlinux-image-{arch}\n")
    assert where_listed("nginx-lite", "amd64", [listing]) == f"{listing}:3"
    assert where_listed("linux-image-arm64", "arm64", [listing]) == f"{listing}:4"
    assert where_listed("other", "arm64", [listing]) == "other"
    assert unknown_packages("E: mmdebstrap failed to run") == []


def test_images_follow_the_release_its_updates_and_its_security_fixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LABCTL_MIRROR", raising=False)
    monkeypatch.delenv("LABCTL_SECURITY_MIRROR", raising=False)
    assert sources() == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    # an offline classroom's own mirror: no security archive unless it is named too
    monkeypatch.setenv("LABCTL_MIRROR", "http://mirror.lan/debian")
    assert sources() == [
        "deb http://mirror.lan/debian bookworm main",
        "deb http://mirror.lan/debian bookworm-updates main",
    ]
    monkeypatch.setenv("LABCTL_SECURITY_MIRROR", "http://mirror.lan/debian-security")
    assert sources()[-1] == "deb http://mirror.lan/debian-security bookworm-security main"
