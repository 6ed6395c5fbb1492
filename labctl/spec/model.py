"""The lab model: what a lab YAML may say, each field described, unknown keys rejected."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from labctl.errors import SpecError
from labctl.instance import naming
from labctl.instance.naming import NAME_RE
from labctl.paths import LABS_DIR, known_labs
from labctl.spec import yamlpos
from labctl.spec.validate import json_schema as schema_of
from labctl.spec.validate import validate

#: what exercises' checks call the lab host (``target: host``, as root) and the lab host as
#: the student doing the exercise (``student``: their account in class mode): no guest may
#: have these names
HOST, STUDENT = "host", "student"
RESERVED_GUESTS = frozenset({HOST, STUDENT})

#: An absolute URL path: no scheme, no authority (``//host``, ``@host``), nothing to unquote.
HTTP_PATH_RE = re.compile(r"/(?!/)[!-~]{0,255}")

Accel = Literal["kvm", "tcg", "auto"]
Technique = Literal[
    "emulation", "full-virtualization", "paravirtualization", "system-container", "app-container"
]


class Strict(BaseModel):
    """Base of the lab and exercise models: unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GuestBase(Strict):
    """Fields every guest has."""

    #: the kind of image (see labctl.images.registry) a guest of this engine runs
    image_kind: ClassVar[str] = ""

    technique: Technique = Field(description="The kind of virtualization this guest shows.")
    description: str = Field("", description="One line shown by `labctl status`.")
    image: str = Field(description="Image name from `labctl images list`.")

    @field_validator("image")
    @classmethod
    def _known_image(cls, image: str) -> str:
        from labctl.images.registry import guest_images

        known = guest_images()
        fits = sorted(n for n, i in known.items() if i.kind == cls.image_kind)
        if image not in known:
            raise ValueError(f"no image {image!r}; images for this engine: {', '.join(fits)}")
        if known[image].kind != cls.image_kind:
            raise ValueError(
                f"{image!r} is a {known[image].kind} image, not a {cls.image_kind} image; "
                f"images for this engine: {', '.join(fits)}"
            )
        return image


class LibvirtGuest(GuestBase):
    """A virtual machine run by libvirt/QEMU, booted from its image's kernel and initramfs."""

    image_kind: ClassVar[str] = "vm"

    engine: Literal["libvirt"]
    arch: Literal["x86_64", "aarch64", "s390x"] = Field(
        "x86_64",
        description="Guest CPU architecture (s390x: QEMU's s390-ccw-virtio mainframe machine).",
    )
    accel: Accel = Field(
        "auto",
        description="kvm: hardware-assisted (falls back to TCG loudly unless --require-kvm); "
        "tcg: QEMU's translator (emulation); auto: kvm when the host can run it.",
    )
    cpus: int = Field(1, ge=1, le=8, description="Virtual CPUs.")
    memory: int = Field(384, ge=128, le=8192, description="Memory in MiB.")
    disk_bus: Literal["virtio", "ide", "sata"] = Field(
        "virtio", description="Disk controller: virtio (paravirtual) or ide/sata (emulated)."
    )
    nic_model: Literal["virtio", "e1000"] = Field(
        "virtio", description="Network card: virtio (paravirtual) or e1000 (emulated)."
    )

    @model_validator(mode="after")
    def _foreign_arch_needs_tcg(self) -> LibvirtGuest:
        if self.arch in ("aarch64", "s390x") and self.accel == "kvm":
            raise ValueError(
                f"accel: kvm cannot run an {self.arch} guest on an x86_64 host; use tcg"
            )
        return self

    @model_validator(mode="after")
    def _image_fits_arch(self) -> LibvirtGuest:
        from labctl.images.registry import guest_images

        image_arch = guest_images()[self.image].arch
        if image_arch != self.arch:
            raise ValueError(f"image {self.image} is for {image_arch} guests, arch is {self.arch}")
        return self


class LxdGuest(GuestBase):
    """A system container (its own init) run by LXD or Incus, reached over SSH."""

    image_kind: ClassVar[str] = "lxd"

    engine: Literal["lxd"]
    memory: int = Field(256, ge=64, le=8192, description="Memory limit in MiB.")


class DockerGuest(GuestBase):
    """An application container run by Docker, with one published port."""

    image_kind: ClassVar[str] = "docker"

    engine: Literal["docker"]
    port: int = Field(8080, ge=1, le=65535, description="Port the app listens on in the container.")
    host_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port published on 127.0.0.1; empty: a free port chosen at `up`.",
    )
    memory: int = Field(128, ge=16, le=8192, description="Memory limit in MiB.")
    http_path: str = Field(
        "/",
        description="Absolute path (e.g. /health) that must answer HTTP 200 on the published "
        "port when the app is ready.",
    )

    @field_validator("http_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        # Pasted after http://127.0.0.1:PORT by a probe run as root: "@host/" or "//host"
        # would send it elsewhere.
        if not HTTP_PATH_RE.fullmatch(value) or "@" in value or "\\" in value:
            raise ValueError(
                "http_path must be an absolute path such as /health: starting with one /, "
                "printable ASCII without spaces, @ or backslashes"
            )
        return value


class PodmanGuest(DockerGuest):
    """The same application container, run by Podman (rootful) from its own copy of the image."""

    image_kind: ClassVar[str] = "podman"

    engine: Literal["podman"]  # type: ignore[assignment]  # a narrower engine than Docker's


Guest = Annotated[
    LibvirtGuest | LxdGuest | DockerGuest | PodmanGuest, Field(discriminator="engine")
]


class Network(Strict):
    """Addresses the lab's own networks are taken from."""

    pool: str = Field(
        "10.210.0.0/16",
        description="Each lab instance gets a free /24 from this range for its VM network.",
    )

    @field_validator("pool")
    @classmethod
    def _is_network(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if net.version != 4 or net.prefixlen > 24:
            raise ValueError("pool must be an IPv4 network of /24 or larger")
        return value


class Grading(Strict):
    """How steps score: each step is worth 1 point, less its penalties (never below 0)."""

    hint_penalty: float = Field(
        0, ge=0, le=1, description="Points a step loses for each hint shown (0: hints are free)."
    )
    wrong_penalty: float = Field(
        0,
        ge=0,
        le=1,
        description="Points a step loses for each wrong attempt: an answer given and judged "
        "wrong by the check after it. The same wrong answer given again counts again; "
        "checking again without a new answer does not.",
    )
    max_attempts: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Wrong attempts allowed to a question with few options (its declared "
        "options, or yes/no and a/b/c); null: no limit. Further answers are refused.",
    )
    count: Literal["once", "now"] = Field(
        "once",
        description="once: a step scores from its first pass; now: only while its last check "
        "passes (a lab broken after passing loses the point).",
    )


class Lab(Strict):
    """A lab: named guests, one per technique it shows."""

    name: str = Field(pattern=NAME_RE, description="Lab name, used in every resource name.")
    title: str = Field("", description="Human title.")
    description: str = Field("", description="What the lab teaches.")
    network: Network = Field(
        default_factory=lambda: Network.model_validate({}), description="Address plan."
    )
    ready_timeout: int = Field(
        300, ge=10, le=3600, description="Seconds each guest may take to become usable."
    )
    guests: dict[str, Guest] = Field(description="Guests by name.", min_length=1)
    grading: Grading = Field(
        default_factory=lambda: Grading.model_validate({}),
        description="Penalties and attempt limits of every exercise (each may set its own).",
    )

    @field_validator("guests")
    @classmethod
    def _guest_names(cls, guests: dict[str, Guest], info: ValidationInfo) -> dict[str, Guest]:
        for name in guests:
            if not re.match(NAME_RE, name):
                raise ValueError(f"guest name {name!r} must match {NAME_RE}")
            if name in RESERVED_GUESTS:  # an exercise's check names the host so
                raise ValueError(f"guest name {name!r} is reserved: exercises mean the host by it")
        lab = info.data.get("name")  # absent when the name itself is invalid
        for name in guests:
            longest = naming.longest_resource(lab, name) if lab else ""
            if len(longest) > naming.MAX_RESOURCE:
                raise ValueError(
                    f"guest {name!r}: with a {naming.MAX_INSTANCE}-character instance its "
                    f"engine name is {len(longest)} characters ({longest}), engines take "
                    f"{naming.MAX_RESOURCE}; shorten the lab or the guest name"
                )
        return guests

    @model_validator(mode="after")
    def _host_ports_differ(self) -> Lab:
        taken: dict[int, str] = {}
        for name, guest in self.guests.items():
            if isinstance(guest, DockerGuest) and guest.host_port is not None:
                other = taken.setdefault(guest.host_port, name)
                if other != name:
                    raise ValueError(
                        f"guests {other} and {name} both ask for host_port {guest.host_port}"
                    )
        return self


def find_lab(ref: str, recorded: str | None = None) -> Path:
    """The lab file ``ref`` names: a file, a directory (its ``lab.yaml``) or a lab's name.

    A name means ``recorded`` when given (the file a running instance was brought up from),
    else ``labs/<name>/lab.yaml``. SpecError, naming the known labs, when there is no such lab.
    """
    path = Path(ref)
    if path.exists():
        return path / "lab.yaml" if path.is_dir() else path
    if re.match(NAME_RE, ref):  # only a name is looked up
        found = Path(recorded) if recorded else LABS_DIR / ref / "lab.yaml"
        if found.parent.is_dir():
            return found
    known = ", ".join(known_labs())
    raise SpecError(f"no lab {ref!r}", f"give a lab file or directory, or one of: {known}")


def load_lab(path: Path) -> Lab:
    """Load and validate a lab file (a directory means its ``lab.yaml``)."""
    if path.is_dir():
        path = path / "lab.yaml"
    return validate(Lab, yamlpos.load(path))


def json_schema() -> dict[str, object]:
    """The JSON Schema of lab files, for editors."""
    return schema_of(Lab, "labctl lab")
