"""Fakes at the library boundary: a libvirt connection and a docker-py client.

They answer as the real libraries do where labctl's recovery depends on it: libvirt refuses
to define a second domain of the same name under another UUID, docker-py raises ``NotFound``
for a removed container and Docker refuses a network whose pool overlaps another.
"""

from __future__ import annotations

import ipaddress
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, TypeVar

import docker.errors
import libvirt

T = TypeVar("T")


def libvirt_error(code: int, message: str) -> libvirt.libvirtError:
    """A libvirtError as libvirt-python raises it (code and message from the daemon)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, 0, message, 2, None, None, None, -1, -1)
    return exc


def _found(table: dict[str, T], name: str, code: int, kind: str) -> T:
    """``table[name]``, or the error libvirt raises for a domain or network it does not have."""
    if name not in table:
        raise libvirt_error(code, f"{kind} not found: '{name}'")
    return table[name]


class _FakeObject:
    """What libvirt's domains and networks share: a name, an XML, on or off, undefined."""

    def __init__(self, xml: str) -> None:
        self._name = ET.fromstring(xml).findtext("name") or ""
        self.xml = xml
        self.active = False
        self.undefined = False

    def name(self) -> str:
        return self._name

    def isActive(self) -> bool:
        return self.active

    def create(self) -> None:
        self.active = True

    def destroy(self) -> None:
        self.active = False

    def undefine(self) -> None:
        self.undefined = True


class FakeDomain(_FakeObject):
    def __init__(self, xml: str) -> None:
        super().__init__(xml)
        self.uuid = ET.fromstring(xml).findtext("uuid") or str(uuid.uuid4())

    def UUIDString(self) -> str:
        return self.uuid

    def XMLDesc(self, flags: int = 0) -> str:
        root = ET.fromstring(self.xml)
        if root.find("uuid") is None:  # libvirt always shows the UUID it keeps
            el = ET.Element("uuid")
            el.text = self.uuid
            root.insert(1, el)
        return ET.tostring(root, encoding="unicode")

    paused = False

    def state(self) -> list[int]:
        return [libvirt.VIR_DOMAIN_PAUSED if self.paused else libvirt.VIR_DOMAIN_RUNNING, 0]

    def resume(self) -> None:
        self.paused = False


class FakeNetwork(_FakeObject):
    def XMLDesc(self, flags: int = 0) -> str:
        return self.xml


class FakeConn:
    """A libvirt connection holding domains and networks in memory."""

    def __init__(self) -> None:
        self.domains: dict[str, FakeDomain] = {}
        self.networks: dict[str, FakeNetwork] = {}
        self.calls: list[str] = []

    def lookupByName(self, name: str) -> FakeDomain:
        return _found(self.domains, name, libvirt.VIR_ERR_NO_DOMAIN, "Domain")

    def defineXML(self, xml: str) -> FakeDomain:
        self.calls.append("defineXML")
        new = FakeDomain(xml)
        old = self.domains.get(new.name())
        if old is not None:
            if old.uuid != new.uuid:  # what libvirt 9.0 answers
                raise libvirt_error(
                    libvirt.VIR_ERR_OPERATION_FAILED,
                    f"operation failed: domain '{new.name()}' already exists with uuid {old.uuid}",
                )
            old.xml = xml
            return old
        self.domains[new.name()] = new
        return new

    def listAllDomains(self) -> list[FakeDomain]:
        return list(self.domains.values())

    restore_error: libvirt.libvirtError | None = None

    def restore(self, path: str) -> None:
        """Start the domain a save file names (its XML in libvirt's header), as libvirt does."""
        from labctl.backends.vm_templates import read_save_image

        self.calls.append("restore")
        if self.restore_error is not None:
            raise self.restore_error
        saved = FakeDomain(read_save_image(Path(path)).xml)
        dom = self.domains.get(saved.name())
        if dom is None or dom.uuid != saved.uuid:
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED, "no such domain to restore")
        dom.active = True

    def networkLookupByName(self, name: str) -> FakeNetwork:
        return _found(self.networks, name, libvirt.VIR_ERR_NO_NETWORK, "Network")

    def networkDefineXML(self, xml: str) -> FakeNetwork:
        self.calls.append("networkDefineXML")
        net = FakeNetwork(xml)
        self.networks[net.name()] = net
        return net

    def listAllNetworks(self) -> list[FakeNetwork]:
        return list(self.networks.values())


def not_found(what: str) -> docker.errors.NotFound:
    return docker.errors.NotFound(f'404 Client Error: Not Found ("{what}")', explanation=what)


class FakeContainer:
    def __init__(self, name: str, ports: dict[str, tuple[str, int | None]]) -> None:
        self.name = name
        self.status = "created"
        self.execs: list[tuple[list[str], str]] = []  # (command, user) of each exec
        bindings = {
            k: [{"HostIp": ip, "HostPort": "" if p is None else str(p)}]
            for k, (ip, p) in ports.items()
        }
        self.attrs: dict[str, Any] = {
            "HostConfig": {"PortBindings": bindings},
            "NetworkSettings": {"Ports": {}},
        }
        self.removed = False
        self.labels: dict[str, str] = {}
        self.options: dict[str, Any] = {}  # what create was given besides name and ports
        self.networks: FakeNetworks | None = None  # the engine's, to check what it joins

    def start(self) -> None:
        if self.status == "paused":  # Docker's own refusal
            raise docker.errors.APIError("cannot start a paused container, try unpause instead")
        ids = {n.id for n in self.networks.by_name.values()} if self.networks else set()
        for joined in (self.attrs["NetworkSettings"].get("Networks") or {}).values():
            if joined["NetworkID"] and joined["NetworkID"] not in ids:  # removed, made again
                raise docker.errors.APIError(f"network {joined['NetworkID']} not found")
        self.status = "running"

    def pause(self) -> None:
        self.status = "paused"

    def unpause(self) -> None:
        self.status = "running"

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.removed = True
        self.volumes_removed = v  # anonymous volumes go with it (docker rm -v)

    def exec_run(
        self, cmd: list[str], demux: bool = False, user: str = ""
    ) -> tuple[int, tuple[bytes, bytes]]:
        self.execs.append((cmd, user))
        return 0, (b"ok\n", b"")


class FakeContainers:
    def __init__(self, networks: FakeNetworks | None = None) -> None:
        self.by_name: dict[str, FakeContainer] = {}
        self.networks = networks

    def get(self, name: str) -> FakeContainer:
        if name not in self.by_name or self.by_name[name].removed:
            raise not_found(f"No such container: {name}")
        return self.by_name[name]

    def create(self, image: str, name: str, ports: dict[str, Any], **kw: Any) -> FakeContainer:
        c = FakeContainer(name, ports)
        c.labels = dict(kw.get("labels") or {})
        c.options = {"image": image, **kw}
        c.attrs["Config"] = {"Image": image}
        c.networks = self.networks
        joins = kw.get("network")
        if joins and self.networks is not None and joins in self.networks.by_name:
            net = self.networks.by_name[joins]
            c.attrs["NetworkSettings"]["Networks"] = {joins: {"NetworkID": net.id}}
        self.by_name[name] = c
        return c

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:
        return [c for c in self.by_name.values() if not c.removed and _labelled(c.labels, filters)]

    def remove(self, name: str) -> None:
        """Behind labctl's back, as `docker rm -f` would."""
        del self.by_name[name]


class FakeDockerNetwork:
    made = 0

    def __init__(self, name: str, subnet: str) -> None:
        FakeDockerNetwork.made += 1
        self.name = name
        self.id = f"{FakeDockerNetwork.made:064x}"
        self.attrs = {"IPAM": {"Config": [{"Subnet": subnet, "Gateway": ""}]}}

    def disconnect(self, container: FakeContainer) -> None:
        container.attrs["NetworkSettings"].setdefault("Networks", {}).pop(self.name)

    def connect(self, container: FakeContainer) -> None:
        joined = container.attrs["NetworkSettings"].setdefault("Networks", {})
        joined[self.name] = {"NetworkID": ""}  # a stopped container's: set when it starts


class FakeNetworks:
    def __init__(self) -> None:
        self.by_name: dict[str, FakeDockerNetwork] = {}

    def list(self, names: list[str] | None = None) -> list[FakeDockerNetwork]:
        return [n for n in self.by_name.values() if not names or any(x in n.name for x in names)]

    def create(self, name: str, ipam: Any, **_: Any) -> FakeDockerNetwork:
        subnet = ipam["Config"][0]["Subnet"]
        for other in self.by_name.values():
            theirs = other.attrs["IPAM"]["Config"][0]["Subnet"]
            if ipaddress.ip_network(subnet).overlaps(ipaddress.ip_network(theirs)):
                raise docker.errors.APIError(
                    "409", explanation="Pool overlaps with other one on this address space"
                )
        net = FakeDockerNetwork(name, subnet)
        self.by_name[name] = net
        return net

    def remove(self, name: str) -> None:
        """Behind labctl's back, as `docker network prune` would once its containers stop."""
        del self.by_name[name]


def _labelled(labels: dict[str, str], filters: dict[str, Any] | None) -> bool:
    """True when ``labels`` has every ``key=value`` of a docker ``label`` filter."""
    wanted = (filters or {}).get("label") or []
    return all(labels.get(k) == v for k, _, v in (w.partition("=") for w in wanted))


class FakeImage:
    """An image: its tags, labels, filesystem layers and history rows (newest first)."""

    def __init__(
        self, id: str, tags: list[str], labels: dict[str, str], layers: list[str], created: str
    ) -> None:
        self.id = id
        self.tags = tags
        self.labels = labels
        self.rows = [{"Id": id, "CreatedBy": "/bin/sh -c #(nop) step", "Size": 0}]
        self.attrs: dict[str, Any] = {
            "RootFS": {"Layers": layers},
            "Size": 1000 * len(layers),
            "Created": created,
            "Config": {"ExposedPorts": {"8080/tcp": {}}, "Labels": labels},
        }

    def history(self) -> list[dict[str, Any]]:
        return self.rows


class FakeImages:
    """Images by id; a build adds one layer on its FROM image and tags the result."""

    def __init__(self) -> None:
        self.by_id: dict[str, FakeImage] = {}
        self.builds: list[dict[str, Any]] = []  # what each build was given

    def add(self, tag: str, labels: dict[str, str], layers: int = 4) -> FakeImage:
        n = len(self.by_id)
        image = FakeImage(
            f"sha256:{n:064x}", [tag], labels, [f"l{n}.{i}" for i in range(layers)], f"t{n:03}"
        )
        for other in self.by_id.values():
            other.tags = [t for t in other.tags if t != tag]
        self.by_id[image.id] = image
        return image

    def get(self, ref: str) -> FakeImage:
        for image in self.by_id.values():
            if ref in (image.id, *image.tags):
                return image
        raise not_found(f"No such image: {ref}")

    def list(self, filters: dict[str, Any] | None = None) -> list[FakeImage]:
        return [i for i in self.by_id.values() if _labelled(i.labels, filters)]

    def build(self, fileobj: Any, tag: str, labels: dict[str, str], **kw: Any) -> tuple[Any, Any]:
        self.builds.append({"context": fileobj.read(), "tag": tag, "labels": labels, **kw})
        base = self.get("labctl/webapp:latest")
        image = self.add(tag, {**base.labels, **labels}, len(base.attrs["RootFS"]["Layers"]) + 1)
        return image, iter([])

    def remove(self, ref: str, force: bool = False) -> None:
        image = self.get(ref)
        if ref in image.tags and len(image.tags) > 1 and not force:
            image.tags.remove(ref)
            return
        del self.by_id[image.id]


class FakeDockerClient:
    def __init__(self) -> None:
        self.networks = FakeNetworks()
        self.containers = FakeContainers(self.networks)
        self.images = FakeImages()
