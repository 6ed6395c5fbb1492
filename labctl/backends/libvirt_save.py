"""libvirt's QEMU save file (``virDomainSave``), read and written for VM templates' clones.

libvirt restores a save file only under the name and UUID it was saved with. A clone's save
file is therefore the template's with another domain XML in libvirt's header (format 2 of
``src/qemu/qemu_saveimage.h``: magic, version, XML length, cookie offset), followed by the
template's QEMU migration stream, unchanged: :func:`write_clone_image`. Anything that is not
a version-2 libvirt save file is refused, and the guest boots instead.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import EngineError

_MAGIC = b"LibvirtQemudSave"
_HEADER = struct.Struct("<16s5I56s")  # magic, version, data_len, was_running, format, cookie
_VERSION = 2


@dataclass(frozen=True)
class SaveImage:
    """What :func:`read_save_image` found in a libvirt save file's header."""

    xml: str
    cookie: bytes  # libvirt's own (the CPU the guest was saved with), kept as it is
    was_running: int
    format: int
    unused: bytes
    stream_offset: int  # where QEMU's migration stream starts


def read_save_image(path: Path) -> SaveImage:
    """Parse the header of a libvirt QEMU save file; EngineError if it is not version 2."""
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise EngineError(f"{path} is too short for a libvirt save file")
        magic, version, data_len, was_running, fmt, cookie_at, unused = _HEADER.unpack(head)
        if magic != _MAGIC or version != _VERSION:
            raise EngineError(
                f"{path} is not a libvirt save file of version {_VERSION} "
                f"(magic {magic!r}, version {version})",
                "LABCTL_VM_TEMPLATES=0 boots every guest instead",
            )
        data = f.read(data_len)
    if len(data) != data_len or not 0 < cookie_at <= data_len:
        raise EngineError(f"{path}: libvirt's header is cut short")
    xml = data[:cookie_at].split(b"\0", 1)[0].decode()
    cookie = data[cookie_at:].split(b"\0", 1)[0]
    return SaveImage(xml, cookie, was_running, fmt, unused, _HEADER.size + data_len)


def write_clone_image(template: Path, xml: str, target: Path) -> None:
    """``template``'s save file with ``xml`` as its domain: libvirt then restores it as that
    domain. The header is rewritten, QEMU's stream copied as it is."""
    image = read_save_image(template)
    data = xml.encode() + b"\0"
    cookie_at = len(data)
    data += image.cookie + b"\0"
    data += b"\0" * (-len(data) % 4096)  # libvirt pads its own XML too, so it can edit it
    header = _HEADER.pack(
        _MAGIC, _VERSION, len(data), image.was_running, image.format, cookie_at, image.unused
    )
    tmp = target.with_name(target.name + ".tmp")
    with template.open("rb") as src, tmp.open("wb") as dst:
        os.fchmod(dst.fileno(), 0o600)
        dst.write(header + data)
        src.seek(image.stream_offset)
        shutil.copyfileobj(src, dst, 4 * 1024**2)
    tmp.rename(target)
