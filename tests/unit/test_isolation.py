"""The nftables table that keeps lab instances apart, on a fake nft."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.errors import HostError
from labctl.instance import isolation
from tests.ci import require
from tests.unit.fake_nft import FakeNft

A = ["lcbr1111aaaa", "br-0123456789ab", "lclx1111aaaa"]
B = ["lclx2222bbbb", "br-ba9876543210"]
INPUT = "add rule inet labctl input "


def test_one_instance_gets_its_bridges_and_every_pair_among_them() -> None:
    script = isolation.apply_script("mini", "ta", A)
    lines = script.splitlines()
    assert lines[:3] == [
        "add table inet labctl",
        'add set inet labctl bridges { type ifname; comment "bridges of labctl lab instances"; }',
        "add set inet labctl allowed { type ifname . ifname; "
        'comment "pairs within one instance"; }',
    ]
    for chain in ("forward", "input", "output"):  # each chain's rules are rewritten, never doubled
        made = lines.index(
            f"add chain inet labctl {chain} {{ type filter hook {chain} priority filter - 10; "
            "policy accept; }"
        )
        assert lines[made + 1] == f"flush chain inet labctl {chain}"
    assert (
        "add rule inet labctl forward iifname @bridges oifname @bridges "
        "iifname . oifname != @allowed counter reject with icmpx admin-prohibited" in script
    )
    assert (
        'add element inet labctl bridges { "br-0123456789ab" comment "labctl mini/ta", '
        '"lcbr1111aaaa" comment "labctl mini/ta", "lclx1111aaaa" comment "labctl mini/ta" }'
        in script
    )
    mine = isolation.elements(A)
    assert len(mine.pairs) == 9  # with itself too: br_netfilter sends bridged traffic by forward
    assert ("lcbr1111aaaa", "lcbr1111aaaa") in mine.pairs
    assert ("lclx1111aaaa", "br-0123456789ab") in mine.pairs
    assert ("br-0123456789ab", "lclx1111aaaa") in mine.pairs


def test_two_instances_share_the_table_but_no_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", "")  # no apt cache: no rule for it
    nft = FakeNft()
    isolation.apply("mini", "ta", A, nft)
    isolation.apply("mini", "tb", B, nft)
    isolation.apply("mini", "ta", A, nft)  # an `up` run again changes nothing
    assert len(nft.rules) == 7 and {r.split()[4] for r in nft.rules} == set(nft.chains)
    assert set(nft.sets["bridges"]) == {*A, *B}
    pairs = set(nft.sets["allowed"])
    assert len(pairs) == 9 + 4
    assert not any((a in A) != (b in A) for a, b in pairs)  # never across instances
    assert isolation.owned("mini", "tb", nft) == isolation.elements(B)


def test_down_removes_exactly_its_own_elements() -> None:
    nft = FakeNft()
    isolation.apply("mini", "ta", A, nft)
    isolation.apply("mini", "tb", B, nft)
    isolation.apply("other", "ta", ["lcbr3333cccc"], nft)  # same instance name, other lab
    removed = isolation.forget("mini", "ta", nft)
    assert removed == isolation.elements(A)
    assert nft.owners() == {"labctl mini/tb", "labctl other/ta"}
    assert set(nft.sets["bridges"]) == {*B, "lcbr3333cccc"}
    assert nft.rules  # the rule stays for the others; host teardown removes the table
    assert isolation.forget("mini", "ta", nft).empty  # a second down finds nothing
    assert len(nft.scripts) == 4


def test_forget_without_the_table_is_nothing_to_do() -> None:
    nft = FakeNft()
    assert isolation.forget("mini", "ta", nft).empty
    assert nft.scripts == []


def test_an_instance_without_bridges_adds_the_table_only() -> None:
    script = isolation.apply_script("mini", "ta", [])
    assert "add element" not in script and "add rule" in script


@pytest.mark.parametrize("name", ["", "a" * 16, 'br" drop', "br;x", "br x"])
def test_a_name_that_is_no_bridge_of_ours_is_refused_not_escaped(name: str) -> None:
    with pytest.raises(HostError, match="not a bridge name"):
        isolation.apply_script("mini", "ta", [name])


def test_a_missing_nft_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real runner, with no nft on PATH: nothing runs
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HostError) as info:
        isolation._nft(["list", "tables"], None)
    assert "nft is not installed" in info.value.message
    assert info.value.hint is not None and "nftables" in info.value.hint
    assert isolation.owned("mini", "ta", isolation._nft).empty  # no nft: nothing is ours


def test_guests_ask_their_own_bridge_for_dns_and_dhcp_and_the_apt_cache_at_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", "http://10.9.0.1:3999")
    rules = [r for r in isolation.table_script().splitlines() if r.startswith(INPUT)]
    assert [r.split(" comment ")[0] for r in rules] == [
        # answers to what the host opened (SSH to a guest, the app's port) still come back
        "add rule inet labctl input iifname @bridges ct state established,related accept",
        "add rule inet labctl input iifname @bridges ip daddr 10.9.0.1 tcp dport 3999 accept",
        "add rule inet labctl input iifname @bridges fib daddr . iif type != "
        "{ local, broadcast, multicast } counter reject with icmpx admin-prohibited",
        "add rule inet labctl input iifname @bridges meta l4proto { tcp, udp } "
        "th dport != { 53, 67 } counter reject with icmpx admin-prohibited",
    ]
    monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", "http://[fd00::1]/")
    assert "input iifname @bridges ip6 daddr fd00::1 tcp dport 80 accept" in (
        isolation.table_script()
    )
    monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", "")  # no cache: DNS and DHCP only
    assert "tcp dport" not in "".join(
        r for r in isolation.table_script().splitlines() if r.startswith(INPUT)
    )


def test_a_student_reaches_only_their_own_instance() -> None:
    nft = FakeNft()
    isolation.apply("mini", "ta", A, nft)
    isolation.publish("mini", "ta", [18080, 18080], nft)
    isolation.apply("mini", "tb", B, nft)
    isolation.publish("mini", "tb", [18081], nft)
    added = isolation.admit("mini", "ta", 1001, nft)
    assert added.students == (1001,)
    assert added.student_bridges == tuple((1001, b) for b in sorted(A))
    assert added.student_ports == ((1001, 18080),)
    assert set(nft.sets["ports"]) == {18080, 18081}
    assert set(nft.sets["students"]) == {1001}
    assert not any(b in B for _, b in nft.sets["student_bridges"])
    script = nft.scripts[-1]
    assert (
        "add element inet labctl student_bridges { "
        '1001 . "br-0123456789ab" comment "labctl mini/ta"' in script
    )
    assert (
        'add element inet labctl student_ports { 1001 . 18080 comment "labctl mini/ta" }' in script
    )
    rules = "\n".join(nft.rules)
    assert (
        "output meta skuid @students oifname @bridges meta skuid . oifname != @student_bridges "
        "counter reject" in rules
    )
    assert (
        # the port asked for, before DNAT (a rootful Podman or Docker without its proxy)
        "output meta skuid @students meta l4proto tcp ct original ip daddr 127.0.0.0/8 "
        "ct original proto-dst @ports meta skuid . ct original proto-dst != @student_ports "
        "counter reject with tcp reset" in rules
    )
    assert (  # nor may a student serve on another's published port
        'output meta skuid @students oifname "lo" tcp sport @ports '
        "meta skuid . tcp sport != @student_ports counter reject with tcp reset" in rules
    )
    owned = isolation.owned("mini", "ta", nft)
    assert owned.ports == (18080,) and len(owned.student_bridges) == 3
    assert not owned.students  # the account's entry is the account's, not the instance's
    isolation.forget("mini", "ta", nft)  # down: what the student reaches goes with the lab
    assert set(nft.sets["ports"]) == {18081} and not nft.sets["student_bridges"]
    assert set(nft.sets["students"]) == {1001}  # ... but the account stays confined
    assert isolation.release(1001, nft).students == (1001,)  # its account is removed
    assert not nft.sets["students"]
    assert isolation.owned("mini", "tb", nft).bridges == tuple(sorted(B))


def test_a_student_admitted_before_their_lab_exists_reaches_no_lab() -> None:
    nft = FakeNft()
    isolation.apply("mini", "tb", B, nft)
    added = isolation.admit("mini", "ta", 1001, nft)  # class up: accounts come before labs
    assert added.students == (1001,) and not added.student_bridges and not added.student_ports
    assert set(nft.sets["students"]) == {1001}


@pytest.mark.parametrize("uid", [-1, 2**32])
def test_a_number_out_of_range_is_refused(uid: int) -> None:
    with pytest.raises(HostError, match="not a port or user id"):
        isolation.admit("mini", "ta", uid, FakeNft())


def test_the_apt_cache_fetches_nothing_from_a_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "skuid 103" not in isolation.table_script()  # no cache account: no rule
    monkeypatch.setattr(isolation, "_uid_of", lambda user: 103 if user == "apt-cacher-ng" else None)
    assert "add rule inet labctl output meta skuid 103 oifname @bridges counter reject" in (
        isolation.table_script()
    )


def test_the_apt_cache_comes_from_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for url, cache in (
        ("http://10.9.0.1:3999", ("10.9.0.1", 3999)),
        ("http://10.9.0.1", ("10.9.0.1", 80)),
        ("https://10.9.0.1/", ("10.9.0.1", 443)),
        ("", None),
    ):
        monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", url)
        found = isolation.apt_cache()
        assert (found and (str(found[0]), found[1])) == cache, url


@pytest.mark.parametrize("url", ["http://cache.example.org:3142", "http://10.9.0.1:99999"])
def test_an_apt_cache_the_firewall_cannot_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", url)
    with pytest.raises(HostError, match="not an address and port") as info:
        isolation.table_script()
    assert info.value.hint is not None and "http://ADDRESS:PORT" in info.value.hint


def test_the_scripts_are_ones_the_kernel_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake takes any rule: real nft runs every script, in a throwaway network namespace
    (nothing of the host's own table is touched)."""
    require(
        os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nft")),
        "needs root, unshare and nft",
    )
    monkeypatch.setattr(isolation, "_uid_of", lambda user: 103)  # the apt cache's rule too
    nft = FakeNft()
    isolation.apply("mini", "ta", A, nft)
    isolation.publish("mini", "ta", [18080], nft)
    isolation.admit("mini", "ta", 1001, nft)
    isolation.forget("mini", "ta", nft)
    isolation.release(1001, nft)
    # one namespace for the whole sequence: each delete needs what the adds before it made
    script = "".join(nft.scripts)
    done = subprocess.run(
        ["unshare", "-n", "nft", "-f", "-"], input=script, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_guest_asks_only_its_own_bridge_on_the_real_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two instances' bridges and a guest on the first, in throwaway namespaces
    (tests/unit/netns_host.py): before the table the kernel delivers the guest's DNS to every
    address of the host; after it, only its own bridge's address answers DNS and DHCP
    (broadcasts too), the apt cache only on its address and port, nothing else."""
    require(
        os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nft", "ip")),
        "needs root, unshare, nft and ip",
    )
    monkeypatch.setenv("LABCTL_GUEST_APT_PROXY", "http://10.9.0.1:3142")
    nft = FakeNft()
    isolation.apply("mini", "ta", ["lcbr1111aaaa"], nft)
    isolation.apply("mini", "tb", ["lcbr2222bbbb"], nft)
    table = tmp_path / "table.nft"
    table.write_text("".join(nft.scripts))
    done = subprocess.run(
        ["unshare", "-m", "-n", sys.executable, str(Path(__file__).with_name("netns_host.py"))]
        + [str(table)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert all(found["before"].values()), found["before"]  # the kernel alone delivers it all
    own, other, cache = "10.9.1.1", "10.9.2.1", "10.9.0.1"
    assert {probe for probe, answered in found["after"].items() if answered} == {
        f"tcp {own} 53",
        f"udp {own} 53",
        f"udp {own} 67",
        "udp 255.255.255.255 67",
        "udp 10.9.1.255 67",
        f"tcp {cache} 3142",
    }
    refused = {probe for probe, answered in found["after"].items() if not answered}
    assert {f"tcp {other} 53", f"udp {other} 53", f"udp {other} 67"} <= refused
    assert {f"tcp {own} 22", f"tcp {own} 3142", f"tcp {cache} 53"} <= refused
