"""labctl contacts a guest only through the lab's own bridge, and only while it is up."""

from __future__ import annotations

import json

import pytest

from labctl.errors import LabctlError
from labctl.instance import netguard


class FakeIp:
    """``ip -j route get`` / ``ip -j link show`` answers of a host with a few interfaces."""

    def __init__(self, routes: dict[str, str], up: set[str]) -> None:
        self.routes = routes  # address -> device (absent: no route)
        self.up = up
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> str:
        self.calls.append(argv)
        if argv[:2] == ["route", "get"]:
            dev = self.routes.get(argv[2])
            if dev is None:
                raise LabctlError("RTNETLINK answers: Network is unreachable")
            return json.dumps([{"dst": argv[2], "dev": dev, "flags": []}])
        if argv[:3] == ["link", "show", "dev"]:
            flags = ["BROADCAST", "MULTICAST", *(["UP", "LOWER_UP"] if argv[3] in self.up else [])]
            return json.dumps([{"ifname": argv[3], "flags": flags}])
        raise AssertionError(argv)


def test_a_guest_on_the_labs_bridge_that_is_up_may_be_contacted() -> None:
    ip = FakeIp({"10.210.1.12": "lcbr12345678"}, up={"lcbr12345678"})
    netguard.require_lab_bridge("10.210.1.12", {"lcbr12345678"}, "kvm-full", ip)  # no raise
    # it asked the kernel the way out, then whether that bridge is up
    assert [c[:2] for c in ip.calls] == [["route", "get"], ["link", "show"]]
    assert ip.calls[1][-1] == "lcbr12345678"


def test_an_address_routed_by_the_default_route_is_refused() -> None:
    # The lab's bridge is gone: the kernel would send the packet out of eth0.
    ip = FakeIp({"10.210.1.12": "eth0"}, up={"eth0"})
    with pytest.raises(netguard.NotOurNetwork) as info:
        netguard.require_lab_bridge("10.210.1.12", {"lcbr12345678"}, "kvm-full", ip)
    assert "leave by eth0" in info.value.message and info.value.code == 4
    assert info.value.hint and "labctl up" in info.value.hint


def test_a_bridge_that_is_down_is_refused() -> None:
    ip = FakeIp({"10.210.1.12": "lcbr12345678"}, up=set())
    with pytest.raises(netguard.NotOurNetwork):
        netguard.require_lab_bridge("10.210.1.12", {"lcbr12345678"}, "kvm-full", ip)


def test_another_labs_bridge_is_refused() -> None:
    ip = FakeIp({"10.210.2.12": "lcbrother000"}, up={"lcbrother000"})
    with pytest.raises(netguard.NotOurNetwork):
        netguard.require_lab_bridge("10.210.2.12", {"lcbr12345678"}, "kvm-full", ip)


def test_no_route_at_all_is_refused() -> None:
    ip = FakeIp({}, up=set())
    with pytest.raises(netguard.NotOurNetwork) as info:
        netguard.require_lab_bridge("10.210.9.9", {"lcbr12345678"}, "kvm-full", ip)
    assert "no route" in info.value.message


def test_loopback_needs_no_question() -> None:
    ip = FakeIp({}, up=set())
    netguard.require_lab_bridge("127.0.0.1", set(), "docker-app", ip)
    assert ip.calls == []
