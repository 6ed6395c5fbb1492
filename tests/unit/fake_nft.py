"""A fake ``nft`` for labctl/instance/isolation.py: it keeps the table's sets in memory.

It understands the scripts isolation writes (``add``/``delete element``) and answers
``nft -j list table inet labctl`` in nft 1.0.6's JSON shape, elements with comments.
"""

from __future__ import annotations

import json
import re
from typing import Any

from labctl.errors import HostError
from labctl.instance.isolation import SETS

_VALUE = r'(?:"[^"]+"|\d+)'
_ITEM = re.compile(rf'({_VALUE})(?: \. ({_VALUE}))?(?: comment "([^"]*)")?')


def _parse(token: str) -> str | int:
    return token.strip('"') if token.startswith('"') else int(token)


class FakeNft:
    """Call it as isolation's runner: ``(args, script) -> stdout``."""

    def __init__(self) -> None:
        self.table = False
        self.rules: list[str] = []
        self.sets: dict[str, dict[Any, str]] = {name: {} for name in SETS}
        self.chains: set[str] = set()
        self.scripts: list[str] = []

    def __call__(self, args: list[str], script: str | None) -> str:
        if args == ["-f", "-"]:
            assert script is not None
            self.scripts.append(script)
            self._run(script)
            return ""
        if args == ["-j", "list", "table", "inet", "labctl"]:
            if not self.table:
                raise HostError("nft -j list table inet labctl failed: No such file or directory")
            return json.dumps(self._listing())
        raise AssertionError(f"unexpected nft call: {args}")

    def _run(self, script: str) -> None:
        for line in script.splitlines():
            if line.startswith("add table"):
                self.table = True
            elif line.startswith("add chain"):
                self.chains.add(line.split()[4])
            elif line.startswith("flush chain"):
                chain = line.split()[4]
                self.rules = [r for r in self.rules if r.split()[4] != chain]
            elif line.startswith("add rule"):
                self.rules.append(line)
            elif line.startswith(("add element", "delete element")):
                name = line.split()[4]
                for a, b, comment in _ITEM.findall(line.split("{", 1)[1]):
                    key = (_parse(a), _parse(b)) if b else _parse(a)
                    if line.startswith("add"):
                        self.sets[name].setdefault(key, comment)
                    elif key in self.sets[name]:
                        del self.sets[name][key]
                    else:
                        raise HostError(f"nft: delete of a missing element {key}")

    def _listing(self) -> dict[str, Any]:
        def elem(key: Any, comment: str) -> dict[str, Any]:
            val = {"concat": list(key)} if isinstance(key, tuple) else key
            return {"elem": {"val": val, "comment": comment}}

        out: list[dict[str, Any]] = [{"table": {"family": "inet", "name": "labctl"}}]
        for name, items in self.sets.items():  # as nft lists them: ints stay numbers
            body: dict[str, Any] = {"family": "inet", "name": name, "table": "labctl"}
            if items:
                body["elem"] = [elem(k, c) for k, c in items.items()]
            out.append({"set": body})
        return {"nftables": out}

    def owners(self) -> set[str]:
        """Comments of every element in the table."""
        return {c for items in self.sets.values() for c in items.values()}
