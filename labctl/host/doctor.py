"""The doctor's rules: host facts in, one check per concern out (ok, warn, fail, unknown).

The rules are pure functions of :class:`HostFacts`, so tests feed them any host. A ``fail``
means the default lab cannot run; everything else (KVM unusable, images not built yet) is a
``warn`` with a hint, because the lab still runs, only slower or after another step.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from labctl.errors import ExitCode, LabctlError
from labctl.host import accel, engines, probe
from labctl.host.accel import AccelProbe
from labctl.instance.naming import DEFAULT_INSTANCE, DEFAULT_LAB
from labctl.instance.state import InstanceDir
from labctl.paths import second_system_containers, system_containers, vm_profile

GIB = 1024**3
#: What the default lab needs: three TCG guests, one container, one Docker app.
LAB_MEMORY_BYTES = 4 * GIB
LAB_DISK_BYTES = 6 * GIB
#: A getCapabilities() slower than this means libvirt re-probes QEMU on every call.
SLOW_CAPS_SECONDS = 2.0
QEMU_ARCHES = ("x86_64", "aarch64", "s390x")
#: each emulator's Debian package, and whether every lab needs it (s390x: only the optional
#: ``virtualization-full/s390x.yaml`` lab does)
QEMU_PACKAGES = {
    "x86_64": ("qemu-system-x86", True),
    "aarch64": ("qemu-system-arm", True),
    "s390x": ("qemu-system-misc", False),
}
SETUP_HINT = "run: labctl host setup"


class Status(str, Enum):
    """Outcome of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"  # the check could not run (e.g. a part of labctl is missing)


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    hint: str | None = None

    @property
    def passed(self) -> bool:
        """False only for a failure: warnings and unknowns do not stop the lab."""
        return self.status is not Status.FAIL

    def as_dict(self) -> dict[str, str | None]:
        """JSON-friendly form."""
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class HostFacts:
    """Everything the probes found, gathered once."""

    distro: probe.Distro
    cpu: probe.CpuInfo
    accel: AccelProbe
    qemu: tuple[probe.QemuInfo, ...]
    libvirt: engines.LibvirtInfo
    docker: engines.DockerInfo
    lxd: engines.LxdInfo
    ansible: probe.AnsibleInfo
    disk: probe.DiskInfo
    memory: probe.MemoryInfo
    images: probe.ImagesInfo
    apt_cache: probe.AptCacheInfo = probe.AptCacheInfo(None)
    templates: probe.TemplatesInfo = probe.TemplatesInfo()
    podman: engines.DockerInfo = engines.DockerInfo(False, set_up=False)  # an optional engine
    nft: bool = True  # the nft command, which keeps lab instances apart
    arm64_programs: bool = True  # binfmt_misc runs arm64 programs through qemu-user
    vm_profile: str = "debian"  # which VM images the labs run here (labctl.paths.vm_profile)
    vm_profile_error: str | None = None  # the profile setting is unreadable: this says why
    root: bool = True  # engines refuse non-root users outside their groups
    lab_up: bool = False  # the default lab's main instance is up: its guests hold their memory
    # the system-container engine host setup started beside the chosen one (test hosts), and
    # what its probe found: labs use it only when a command names it
    second_lxd: tuple[str, engines.LxdInfo] | None = None


def gather(
    images: Sequence[str] | None = None,
    templates: Callable[[], probe.TemplatesInfo] = probe.TemplatesInfo,
) -> HostFacts:
    """Run every probe on this host; ``images`` are those the labs run here (default: all);
    ``templates`` lists the VM templates (the backend's, which the CLI passes in)."""
    profile, profile_error = _profile()
    return HostFacts(
        distro=probe.os_release(),
        cpu=probe.cpu(),
        accel=accel.detect(),
        qemu=tuple(probe.qemu(a) for a in QEMU_ARCHES),
        libvirt=engines.libvirt_probe(),
        docker=engines.docker_probe(),
        podman=engines.docker_probe(podman=True),
        lxd=engines.lxd_probe(),
        ansible=probe.ansible_probe(),
        disk=probe.disk(),
        memory=probe.memory(),
        images=probe.images_probe(images),
        templates=templates(),
        apt_cache=probe.apt_cache_probe(),
        nft=shutil.which("nft") is not None,
        arm64_programs=probe.runs_arm64_programs(),
        vm_profile=profile,
        vm_profile_error=profile_error,
        root=probe.is_root(),
        lab_up=default_lab_up(),
        second_lxd=_second_lxd(),
    )


def _second_lxd() -> tuple[str, engines.LxdInfo] | None:
    """The second system-container engine host setup started, probed on its own sockets."""
    try:
        second, chosen = second_system_containers(), system_containers()
    except LabctlError as exc:  # an unreadable choice: the lxd row already says so
        return ("lxd or incus", engines.LxdInfo(None, False, error=exc.message))
    if second is None or second == chosen:
        return None
    return second, engines.lxd_probe(engine=second)


def _profile() -> tuple[str, str | None]:
    """This host's VM profile, and why it cannot be read (then the default)."""
    try:
        return vm_profile(), None
    except LabctlError as exc:
        return "debian", f"{exc.message} ({exc.hint})"


def default_lab_up() -> bool:
    """Whether a guest of the default lab's main instance is up (its state file says so)."""
    try:
        state = InstanceDir(DEFAULT_LAB, DEFAULT_INSTANCE).load()
    except LabctlError:  # a damaged state file: `labctl status` explains it
        return False
    return state is not None and any(g.stage == "ready" for g in state.guests.values())


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _unreachable(name: str, said: str, error: str | None, setup_does: str, root: bool) -> Check:
    """The failed row of an engine daemon (group ``name``) that does not answer.

    A daemon that refuses us for permissions needs root, not a setup run.
    """
    if not root or (error and "ermission denied" in error):
        hint = f"run labctl as root (or as a member of the {name} group)"
    else:
        hint = f"{SETUP_HINT} ({setup_does})"
    return Check(name, Status.FAIL, f"{said}: {error}", hint)


# --- rules --------------------------------------------------------------------------------


def check_distro(d: probe.Distro) -> Check:
    """Supported distributions get ``host setup``; others may still work if prepared by hand."""
    if d.supported:
        return Check("distribution", Status.OK, d.pretty)
    return Check(
        "distribution",
        Status.WARN,
        f"{d.pretty} is not one labctl host setup supports",
        "use Debian 12 or Ubuntu 22.04/24.04, or install the engines by hand",
    )


def check_cpu(c: probe.CpuInfo) -> Check:
    """The CPU itself is a fact, not a problem: the KVM row says what it means."""
    flags = ", ".join(c.virt_flags) or "none"
    nested = "; this host is itself a virtual machine" if c.hypervisor else ""
    return Check(
        "cpu", Status.OK, f"{c.arch}, {c.count} CPUs, virtualization flags: {flags}{nested}"
    )


#: Where this host is itself a VM, the hypervisor setting that passes VT-x/AMD-V through.
NESTED_HINT = (
    "; this host is a VM: turn on nested virtualization in its hypervisor (Vagrant: libvirt "
    '`nested = true` + `cpu_mode = "host-passthrough"`, VirtualBox `--nested-hw-virt on`)'
)


def check_kvm(a: AccelProbe, in_vm: bool = False) -> Check:
    """Usable KVM is ok; unusable KVM is a warning because TCG runs the lab, only slower."""
    if a.usable:
        return Check("kvm", Status.OK, f"usable: {a.reason}")
    return Check(
        "kvm",
        Status.WARN,
        a.reason,
        "nothing to do for the lab (TCG works, only slower); for real KVM use a host whose "
        "CPU exposes VT-x/AMD-V (kvm_intel/kvm_amd)" + (NESTED_HINT if in_vm else ""),
    )


def check_qemu(q: probe.QemuInfo) -> Check:
    """The lab boots an x86_64 and an arm64 guest; the optional s390x lab an s390x one."""
    name = f"qemu {q.arch}"
    if q.found:
        return Check(name, Status.OK, f"QEMU {q.version} ({q.binary})")
    package, needed = QEMU_PACKAGES[q.arch]
    if not needed:
        return Check(
            name,
            Status.WARN,
            f"{q.error or 'not found'}: only the optional {q.arch} lab needs it",
            f"apt-get install {package}",
        )
    return Check(
        name, Status.FAIL, q.error or "not found", f"{SETUP_HINT} (or apt-get install {package})"
    )


def check_libvirt(lv: engines.LibvirtInfo, root: bool = True) -> Check:
    """libvirtd must answer on qemu:///system."""
    if lv.reachable:
        return Check(
            "libvirt", Status.OK, f"libvirt {lv.version} on {lv.uri}, QEMU {lv.hypervisor_version}"
        )
    said = f"{lv.uri} does not answer"
    return _unreachable("libvirt", said, lv.error, "starts virtlogd and libvirtd", root)


def check_libvirt_speed(lv: engines.LibvirtInfo) -> Check:
    """Detect the slow-capability trap: QEMU's user cannot open /dev/kvm, libvirt re-probes."""
    name = "libvirt capabilities"
    if not lv.reachable:
        return Check(name, Status.UNKNOWN, "libvirt does not answer")
    slow = lv.caps_seconds is not None and lv.caps_seconds > SLOW_CAPS_SECONDS
    hint = (
        f'{SETUP_HINT} (sets user/group "root" in /etc/libvirt/qemu.conf and opens '
        "/dev/kvm to the kvm group), then restart libvirtd"
    )
    if lv.kvm_accessible is False:
        took = f"; getCapabilities() took {lv.caps_seconds:.1f} s" if lv.caps_seconds else ""
        return Check(
            name,
            Status.WARN,
            f"/dev/kvm is not usable by QEMU's user {lv.qemu_user!r}: libvirt will "
            f"re-probe QEMU on almost every call (seconds per call){took}",
            hint,
        )
    if slow:
        return Check(
            name,
            Status.WARN,
            f"getCapabilities() took {lv.caps_seconds:.1f} s (fast is < 0.1 s): libvirt "
            "keeps re-probing QEMU",
            hint,
        )
    took = f"{lv.caps_seconds:.3f} s" if lv.caps_seconds is not None else "not timed"
    return Check(name, Status.OK, f"getCapabilities() {took}, QEMU runs as {lv.qemu_user!r}")


def check_docker(dk: engines.DockerInfo, root: bool = True) -> Check:
    """A Docker-compatible API (dockerd or Podman) must answer."""
    if dk.reachable:
        return Check("docker", Status.OK, f"{dk.engine} {dk.version} (API {dk.api_version})")
    said = "Docker API does not answer"
    return _unreachable("docker", said, dk.error, "starts containerd and dockerd", root)


def check_podman(pm: engines.DockerInfo) -> Check:
    """Podman is optional: only labs with ``engine: podman`` guests need its API service."""
    if pm.reachable:
        return Check("podman", Status.OK, f"{pm.engine} {pm.version} (API {pm.api_version})")
    if not pm.set_up:
        return Check(
            "podman",
            Status.WARN,
            f"not set up ({pm.error}): labs with podman guests (virtualization-full) cannot run",
            f"{SETUP_HINT} (installs Podman and starts its API service)",
        )
    return Check(
        "podman",
        Status.WARN,
        f"Podman's API does not answer: {pm.error}; labs with podman guests cannot run",
        f"{SETUP_HINT} (starts podman system service)",
    )


def check_lxd(lx: engines.LxdInfo, root: bool = True) -> Check:
    """LXD or Incus must answer and have a storage pool and a network in its default profile."""
    if lx.none_chosen:
        return Check(
            "lxd",
            Status.WARN,
            "none: host setup chose no system-container engine for this host (it is itself a "
            "container); labs with a system container cannot run here",
            "labs with a system container go on another host; where this one can run them: "
            "labctl host setup --system-containers lxd (or incus)",
        )
    if not lx.reachable:
        where = f" on {lx.socket}" if lx.socket else ""
        said = f"LXD/Incus does not answer{where}"
        return _unreachable("lxd", said, lx.error, "starts lxd and initialises it", root)
    what = f"{lx.server} {lx.version} on {lx.socket}"
    if not lx.initialised:
        return Check(
            "lxd",
            Status.FAIL,
            f"{what}, but not initialised (default profile lacks a root disk or a NIC)",
            f"{SETUP_HINT} (runs lxd init --preseed with a dir pool and lxdbr0)",
        )
    return Check("lxd", Status.OK, f"{what}, initialised")


def check_second_lxd(engine: str, lx: engines.LxdInfo) -> Check:
    """The system-container engine beside the chosen one: a warning when it is down, since
    labs run on the chosen one, but the test suite (and a command naming it) needs it."""
    name = f"{engine} (2nd)"
    use = f"labs use it when a command says LABCTL_SYSTEM_CONTAINERS={engine}"
    hint = f"{SETUP_HINT} --test-tools (starts {engine} beside the chosen engine)"
    if not lx.reachable:
        where = f" on {lx.socket}" if lx.socket else ""
        return Check(name, Status.WARN, f"does not answer{where}: {lx.error}", hint)
    what = f"{lx.server} {lx.version} on {lx.socket}"
    if not lx.initialised:
        return Check(name, Status.WARN, f"{what}, but not initialised", hint)
    return Check(name, Status.OK, f"{what}, initialised; {use}")


def check_ansible(an: probe.AnsibleInfo) -> Check:
    """ansible-core and ansible-runner drive host setup and guest configuration."""
    if an.available:
        return Check(
            "ansible",
            Status.OK,
            f"ansible-core {an.core_version}, ansible-runner {an.runner_version}",
        )
    return Check(
        "ansible",
        Status.FAIL,
        an.error or "not available",
        "reinstall labctl: pip install -e . (brings ansible-core and ansible-runner)",
    )


def check_disk(dk: probe.DiskInfo, need: int = LAB_DISK_BYTES) -> Check:
    """Images and guest disks need room under the cache directory."""
    detail = f"{_gib(dk.free_bytes)} free for {dk.path} (the lab needs {_gib(need)})"
    if dk.free_bytes >= need:
        return Check("disk", Status.OK, detail)
    return Check(
        "disk", Status.FAIL, detail, "free some space or point LABCTL_CACHE at a larger filesystem"
    )


def check_memory(m: probe.MemoryInfo, need: int = LAB_MEMORY_BYTES, lab_up: bool = False) -> Check:
    """Three guests and a container need memory that is available now, not just installed.

    Once the default lab is up its guests already hold their share, so what is left over is
    no longer compared with the whole lab's need.
    """
    available = f"{_gib(m.available_bytes)} available of {_gib(m.total_bytes)}"
    if lab_up:
        return Check("memory", Status.OK, f"{available}; the default lab is up and holds its own")
    detail = f"{available} (the lab needs {_gib(need)})"
    if m.available_bytes >= need:
        return Check("memory", Status.OK, detail)
    return Check("memory", Status.FAIL, detail, "stop other guests or programs, or add memory")


def check_images(im: probe.ImagesInfo) -> Check:
    """Images not built yet are a warning: ``labctl images build`` makes them."""
    if not im.known:
        return Check(
            "images",
            Status.UNKNOWN,
            f"cannot list images: {im.error}",
            "the image registry is not importable; check labctl.images",
        )
    ready = im.named("ready")
    if len(ready) == len(im.images):
        return Check("images", Status.OK, f"{len(ready)} built: {', '.join(ready) or 'none'}")
    parts = [f"{len(ready)} of {len(im.images)} built"]
    for status in ("missing", "outdated", "missing from engine", "unknown"):
        names = im.named(status)
        if names:
            parts.append(f"{status}: {', '.join(names)}")
    if not any(im.named(s) for s in ("missing", "outdated", "missing from engine")):
        # built, as far as this host knows: their engine did not answer (its own row says so)
        hint = "their engines did not answer (see the engines' rows); no build is needed"
        return Check("images", Status.UNKNOWN, "; ".join(parts), hint)
    return Check("images", Status.WARN, "; ".join(parts), "run: labctl images build")


def check_templates(t: probe.TemplatesInfo) -> Check:
    """VM templates cost disk; the stale ones are only that: a warning with the command."""
    if t.error:
        return Check("templates", Status.UNKNOWN, f"cannot list VM templates: {t.error}")
    if not t.kept:
        return Check("templates", Status.OK, "none yet: up makes one per kind of VM")
    detail = f"{t.kept} kept, {t.size / 1024**2:.0f} MiB"
    if not t.stale:
        return Check("templates", Status.OK, detail)
    detail += f"; {t.stale} stale, {t.stale_size / 1024**2:.0f} MiB"
    return Check("templates", Status.WARN, detail, "run: labctl images prune")


def check_apt_cache(ac: probe.AptCacheInfo) -> Check:
    """Whether the system containers can install packages (through the host's apt cache)."""
    name = "guest packages"
    if ac.proxy is None:
        return Check(
            name,
            Status.WARN,
            "no apt cache for the guests: they install packages only if they reach the "
            "mirror themselves",
            SETUP_HINT,
        )
    if not ac.reaches_mirror:
        why = ac.error or "no answer"
        return Check(
            name,
            Status.WARN,
            f"the guests' apt cache {ac.proxy} cannot fetch from the mirror ({why}): "
            "guests cannot install packages",
            "start it with `labctl host setup`; check the host's own apt sources",
        )
    return Check(name, Status.OK, f"guests install packages through the apt cache {ac.proxy}")


def check_nft(present: bool) -> Check:
    """Lab instances are kept apart by an nftables table: without nft, up cannot do it."""
    if present:
        return Check("isolation", Status.OK, "nft present: lab instances are kept apart")
    return Check(
        "isolation",
        Status.FAIL,
        "nft is missing: labctl cannot keep lab instances apart",
        "apt-get install nftables (labctl host setup)",
    )


def check_arm64_builds(runs: bool, profile: str, profile_error: str | None = None) -> Check:
    """The Debian arm64 VM image runs its packages' scripts as arm64 programs (qemu-user)."""
    name = "arm64 builds"
    if profile_error:
        return Check(name, Status.FAIL, profile_error, "fix /etc/labctl/vm-profile")
    if profile == "tiny":
        return Check(name, Status.OK, "VM profile tiny: the arm64 image is unpacked, nothing runs")
    if runs:
        return Check(name, Status.OK, "arm64 programs run through qemu-user (binfmt_misc)")
    return Check(
        name,
        Status.WARN,
        "arm64 programs do not run here: the arm64 Debian VM image cannot be built",
        "labctl host setup (installs qemu-user-static and registers it with binfmt_misc)",
    )


#: The rules in table order, each reading its part of the facts.
RULES: Sequence[Callable[[HostFacts], Check | list[Check]]] = (
    lambda f: check_distro(f.distro),
    lambda f: check_cpu(f.cpu),
    lambda f: check_kvm(f.accel, f.cpu.hypervisor),
    lambda f: [check_qemu(q) for q in f.qemu],
    lambda f: check_libvirt(f.libvirt, f.root),
    lambda f: check_libvirt_speed(f.libvirt),
    lambda f: check_docker(f.docker, f.root),
    lambda f: check_podman(f.podman),
    lambda f: check_lxd(f.lxd, f.root),
    lambda f: [check_second_lxd(*f.second_lxd)] if f.second_lxd else [],
    lambda f: check_ansible(f.ansible),
    lambda f: check_disk(f.disk),
    lambda f: check_memory(f.memory, lab_up=f.lab_up),
    lambda f: check_images(f.images),
    lambda f: check_templates(f.templates),
    lambda f: check_arm64_builds(f.arm64_programs, f.vm_profile, f.vm_profile_error),
    lambda f: check_apt_cache(f.apt_cache),
    lambda f: check_nft(f.nft),
)


def evaluate(facts: HostFacts) -> list[Check]:
    """Apply every rule to ``facts``."""
    checks: list[Check] = []
    for rule in RULES:
        result = rule(facts)
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def lab_can_run(checks: Sequence[Check]) -> bool:
    """True when no check failed."""
    return all(c.passed for c in checks)


def exit_code(checks: Sequence[Check]) -> int:
    """0 when the default lab can run, ``ExitCode.HOST`` when a check failed."""
    return ExitCode.OK if lab_can_run(checks) else ExitCode.HOST
