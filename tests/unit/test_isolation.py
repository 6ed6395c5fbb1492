"""The nftables table that keeps lab instances apart, on a fake nft."""

from __future__ import annotations

import pytest

from labctl.errors import HostError
from labctl.instance import isolation
from tests.unit.fake_nft import FakeNft

A = ["lcbr1111aaaa", "br-0123456789ab", "lclx1111aaaa"]
B = ["lclx2222bbbb", "br-ba9876543210"]


def test_one_instance_gets_its_bridges_and_every_pair_among_them() -> None:
    script = isolation.apply_script("mini", "ta", A)
    assert script.splitlines()[:5] == [
        "add table inet labctl",
        'add set inet labctl bridges { type ifname; comment "bridges of labctl lab instances"; }',
        "add set inet labctl allowed { type ifname . ifname; "
        'comment "pairs within one instance"; }',
        "add chain inet labctl forward { type filter hook forward priority filter - 10; "
        "policy accept; }",
        "flush chain inet labctl forward",  # the one rule is rewritten, never duplicated
    ]
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


def test_two_instances_share_the_table_but_no_pair() -> None:
    nft = FakeNft()
    isolation.apply("mini", "ta", A, nft)
    isolation.apply("mini", "tb", B, nft)
    isolation.apply("mini", "ta", A, nft)  # an `up` run again changes nothing
    assert len(nft.rules) == 1
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
