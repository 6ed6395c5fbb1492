"""YAML loading that remembers the line of every key and refuses hostile files.

Lab and exercise files come from teachers and students alike, and labctl runs as root, so
the loader refuses, naming the file and the line: text that is not UTF-8, duplicate keys
(YAML would keep the last one silently), control characters (a title with ESC sequences
would rewrite the terminal), recursive aliases, and aliases that expand to more than a lab
file ever needs (a 2 KB "billion laughs" file would take minutes and gigabytes).

The file is composed once; the node graph gives both the data and the line map.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from labctl.errors import SpecError

Loc = tuple[str | int, ...]

# Bounds far above what labs/ holds (files under 8 KB, at most about 250 nodes), low enough
# that the pure-Python parser refuses any file in well under a second.
MAX_BYTES = 64 * 1024
MAX_ALIASES = 100  # alias uses (``*name``) in one file
MAX_NODES = 5_000  # nodes, counting each alias as the whole node it repeats
MAX_DEPTH = 64  # nesting of mappings and sequences

#: C0 controls but tab and newline, DEL, C1 controls: a terminal may act on any of them.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Located:
    """A parsed YAML document and the 1-based line of each key path in it."""

    data: Any
    path: Path
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its closest parent that has one."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)


class Refused(yaml.MarkedYAMLError):
    """Valid YAML that labctl will not read; carries the line and a hint."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds aliases, nesting and size, and refuses duplicates and controls."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._nodes = 0
        self._depth = 0
        self._open: set[str] = set()  # anchors whose node is still being composed
        self._sizes: dict[int, int] = {}  # id(node) -> nodes once its aliases are expanded

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose as usual, counting what aliases would expand to."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if event.anchor in self._open:
                raise Refused(
                    f"alias *{event.anchor} refers to a node that contains it (recursion)",
                    event.start_mark,
                    "aliases may only repeat a finished node",
                )
            if self._aliases > MAX_ALIASES:
                raise Refused(
                    f"more than {MAX_ALIASES} aliases",
                    event.start_mark,
                    "write the values out; lab files need few aliases",
                )
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        self._nodes += 1
        if self._nodes > MAX_NODES:  # early, before a flat list of scalars is parsed whole
            raise Refused(f"more than {MAX_NODES} values", event.start_mark, "lab files are small")
        if self._depth >= MAX_DEPTH:
            raise Refused(
                f"nested more than {MAX_DEPTH} levels deep", event.start_mark, "flatten the file"
            )
        if anchor:
            self._open.add(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor or "")
        if node is not None:
            self._count(node)
        return node

    def _count(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(item)] for item in node.value)
        else:
            size = 1
            _check_text(node.value, node.start_mark)
        if size > MAX_NODES:
            raise Refused(
                f"aliases expand this to more than {MAX_NODES} nodes",
                node.start_mark,
                "write the values out; lab files are small",
            )
        self._sizes[id(node)] = size

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Construct as usual; a value its tag cannot take (``!!int x``) names its line."""
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            kind = str(node.tag).rpartition(":")[2]
            raise ConstructorError(
                None, None, f"{node.value!r} is not a valid {kind}", node.start_mark
            ) from exc

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice in one mapping (merged ``<<`` keys may be overridden)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the constructor explains it
                if first is not key_node:
                    raise Refused(
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                        "give each key once; YAML would silently keep the last one",
                    )
        return super().construct_mapping(node, deep)


def _check_text(text: str, mark: Any) -> None:
    found = CONTROL.search(text)
    if found:
        char = found.group()
        name = {"\x1b": " (ESC)", "\r": " (CR)", "\x00": " (NUL)"}.get(char, "")
        raise Refused(
            f"control character U+{ord(char):04X}{name} in a text",
            mark,
            "remove it: texts are shown on a terminal, which would act on it",
        )


def _walk(loader: _Loader, node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            try:
                key = loader.construct_object(key_node, deep=True)
                hash(key)
            except (yaml.YAMLError, TypeError):
                continue
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _walk(loader, value_node, (*loc, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _walk(loader, item, (*loc, i), lines)


def _read(path: Path) -> str:
    """The file's text: a regular file, at most MAX_BYTES, UTF-8."""
    try:
        if not path.exists():
            raise SpecError(f"{path} does not exist", "give a lab file (YAML), or its directory")
        if not path.is_file():
            raise SpecError(f"cannot read {path}: not a regular file", "give a lab file (YAML)")
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise SpecError(
            f"{path}: larger than {MAX_BYTES // 1024} KiB", "lab and exercise files are small"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})",
            "save the file as UTF-8",
        ) from exc


def load(path: Path) -> Located:
    """Parse ``path``; a syntax error or a refused construct becomes a SpecError with its line."""
    text = _read(path)
    try:
        return _parse(text, path)
    except Refused as exc:
        raise SpecError(f"{_where(path, exc.problem_mark)}: {exc.problem}", exc.hint) from exc
    except yaml.MarkedYAMLError as exc:
        where = _where(path, exc.problem_mark or exc.context_mark)
        raise SpecError(f"{where}: invalid YAML: {exc.problem}", "fix the YAML syntax") from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow anywhere
        line = text[: exc.position].count("\n") + 1
        raise SpecError(
            f"{path}:{line}: control character U+{exc.character:04X} is not allowed",
            "remove it: texts are shown on a terminal, which would act on it",
        ) from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {exc}", "fix the YAML syntax") from exc


def _parse(text: str, path: Path) -> Located:
    """Compose once; construct the data and walk the lines from that one node graph."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # empty, or comments only: errors point at its first line
            return Located({}, path, {(): 1})
        data = loader.construct_document(node)
        lines: dict[Loc, int] = {}
        _walk(loader, node, (), lines)
    finally:
        loader.dispose()
    return Located(data if data is not None else {}, path, lines)


def _where(path: Path, mark: Any) -> str:
    return f"{path}:{mark.line + 1}" if mark else str(path)
