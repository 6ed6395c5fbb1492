"""A student's own application images and containers (``labctl app``): scope and contract.

In class mode a student has no Docker access (the docker group is root), yet two exercises
ask them to build an image, read its history and run it. ``labctl app`` does that for them,
as root through the class's entry point, inside one scope: their lab, instance and student
id. Every name they give must be theirs by its shape (a tag ``labctl/NAME:WORD-<student>``,
a container ``WORD-<student>``: the word has no dash, so a name has exactly one owner), and
everything made carries the scope's labels, which is how ``labctl down`` finds and removes
it. The lab's own images (``labctl/webapp:latest``: labelled ``labctl.image``, and no
instance's) may be read and run, nobody else's.

A build context is read as the student (:func:`read_context` runs a child process under
their uid), from a directory of theirs inside their home; the Dockerfile may start only
from the lab's images or their own and fetch nothing by URL (:func:`dockerfile_sources`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labctl.errors import ExitCode, HostError, LabctlError, SpecError

#: the label every object ``labctl app`` makes carries, beside lab, instance and student
MARK = "labctl.app"
#: a build context larger than this is refused (it is read into memory as root)
CONTEXT_LIMIT = 64 * 1024 * 1024
#: the word before the student id in a tag or a container name: no dash, so one owner
WORD = r"[a-z0-9]+"
REPO_RE = re.compile(r"^labctl/[a-z0-9]+(?:[._-][a-z0-9]+)*$")


@dataclass(frozen=True)
class AppScope:
    """Whose images and containers these are: a lab instance and a student id."""

    lab: str
    instance: str
    student: str
    class_name: str | None = None  # class mode: labelled with the class too
    network: str | None = None  # the instance's app network (None: the lab is down)

    @property
    def labels(self) -> dict[str, str]:
        """Labels of everything made in this scope (``down`` removes by lab and instance)."""
        labels = {
            "labctl.lab": self.lab,
            "labctl.instance": self.instance,
            "labctl.student": self.student,
            MARK: "student",
        }
        if self.class_name is not None:
            labels["labctl.class"] = self.class_name
        return labels

    def owns(self, labels: dict[str, str] | None) -> bool:
        """True when an engine object's labels put it in this scope."""
        labels = labels or {}
        return all(labels.get(k) == v for k, v in self.labels.items() if k != "labctl.class")

    def example_tag(self) -> str:
        return f"labctl/webapp:v2-{self.student}"

    def tag(self, ref: str) -> str:
        """``ref`` when it is a tag of this student's (``labctl/NAME:WORD-<student>``)."""
        repo, _, tag = ref.partition(":")
        if REPO_RE.match(repo) and _owner(tag) == self.student:
            return ref
        raise NotYours(
            f"{ref} is not a tag of yours ({self.student})",
            f"name your images labctl/NAME:WORD-{self.student}, e.g. {self.example_tag()}",
        )

    def container(self, name: str) -> str:
        """``name`` when it is a container name of this student's (``WORD-<student>``)."""
        if _owner(name) == self.student:
            return name
        raise NotYours(
            f"{name} is not a container name of yours ({self.student})",
            f"name your containers WORD-{self.student}, e.g. web-{self.student}",
        )

    def is_mine(self, ref: str) -> bool:
        """True when ``ref`` has the shape of this student's tag (the engine not asked)."""
        repo, _, tag = ref.partition(":")
        return bool(REPO_RE.match(repo)) and _owner(tag) == self.student


def owner(ref: str) -> str | None:
    """The student an image reference's tag names (None: no student's, as ``latest``)."""
    return _owner(ref.rpartition(":")[2]) if ":" in ref.rpartition("/")[2] else None


def _owner(name: str) -> str | None:
    """The student a tag or container name belongs to: what follows its word's dash."""
    m = re.match(rf"^{WORD}-(.+)$", name)
    return m.group(1) if m is not None else None


class NotYours(LabctlError):
    """A name, image or option outside the student's scope. Exit 2: nothing ran."""

    code = ExitCode.USAGE


def lab_image(ref: str, labels: dict[str, str] | None) -> bool:
    """True for one of the lab's own images: ``labctl/...``, built by labctl, nobody's."""
    labels = labels or {}
    repo = ref.rpartition(":")[0] if ":" in ref else ref
    built_by_labctl = "labctl.image" in labels and "labctl.instance" not in labels
    return bool(REPO_RE.match(repo)) and built_by_labctl


# ---- results --------------------------------------------------------------------------------


def short_id(image_id: str) -> str:
    """An image id as Docker's listings show it: 12 hex digits."""
    return image_id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class AppImage:
    """An image of the student's (or the lab's)."""

    tag: str
    id: str
    layers: int  # filesystem layers (RootFS)
    size: int  # bytes

    @property
    def short_id(self) -> str:
        """The id as ``docker images`` shows it."""
        return short_id(self.id)


@dataclass(frozen=True)
class HistoryRow:
    """One row of an image's history: one instruction, and the layer it made (if any)."""

    id: str  # the intermediate image's id, or "<missing>"
    created_by: str
    size: int

    @property
    def short_id(self) -> str:
        """The intermediate image's id as ``docker history`` shows it."""
        return short_id(self.id)


@dataclass(frozen=True)
class History:
    """An image's history, newest first, and its filesystem layers."""

    tag: str
    rows: tuple[HistoryRow, ...]
    layers: int


@dataclass(frozen=True)
class Removed:
    """What ``labctl app rm`` removed: an image (by its tag) or a container (by its name)."""

    kind: Literal["image", "container"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class AppContainer:
    """A container of the student's, as ``labctl app ls`` lists it.

    Only ``run --wait`` measures ``answered_after``: what ``app-arranque`` asks for.
    """

    name: str
    image: str
    status: str  # running, exited...
    port: int | None  # published on 127.0.0.1
    answered_after: float | None = None  # seconds from creation to its first HTTP answer

    @property
    def url(self) -> str:
        """Where it answers, from the server."""
        return f"http://127.0.0.1:{self.port}/" if self.port else "-"


@dataclass(frozen=True)
class Listing:
    """Everything of one scope the engine holds."""

    images: tuple[AppImage, ...]
    containers: tuple[AppContainer, ...]


# ---- the contract ---------------------------------------------------------------------------


class AppEngine(ABC):
    """What ``labctl app`` asks of an engine; every call checks the scope first."""

    @abstractmethod
    def build(self, scope: AppScope, context: bytes, tag: str) -> AppImage:
        """Build the tar ``context`` (its ``Dockerfile``) as ``tag``, on the scope's network."""

    @abstractmethod
    def history(self, scope: AppScope, ref: str) -> History:
        """The history of an image of the student's, or of the lab's."""

    @abstractmethod
    def run(
        self, scope: AppScope, ref: str, name: str, port: int, inner: int | None, wait: float
    ) -> AppContainer:
        """Start ``name`` from ``ref``, its port ``inner`` (default: the one the image
        exposes) on 127.0.0.1:``port``; with ``wait`` > 0, until it answers HTTP."""

    @abstractmethod
    def listing(self, scope: AppScope) -> Listing:
        """The scope's images and containers."""

    @abstractmethod
    def remove(self, scope: AppScope, name: str) -> Removed:
        """Remove a container (by name) or an image (by tag) of the student's; what it was."""

    @abstractmethod
    def remove_all(self, lab: str, instance: str) -> list[str]:
        """Remove every image ``labctl app`` made for the instance (``down``); their tags."""


# ---- the build context, read as the student -------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Whose rights read a build context: a uid and gid, and the home it must lie in."""

    uid: int
    gid: int
    home: Path


def read_context(path: str, reader: Reader | None, limit: int = CONTEXT_LIMIT) -> bytes:
    """The directory ``path`` as a tar, read by a child process with ``reader``'s rights.

    With a reader the directory must be theirs and inside their home (followed links
    included); without one (root for themselves) any directory. The child runs this
    module's ``__main__`` under the reader's uid, so the kernel decides what it may read.
    """
    argv = [sys.executable, "-I", "-m", "labctl.backends.docker_context", os.path.abspath(path)]
    extra: dict[str, object] = {}
    if reader is not None:
        argv.append(str(reader.home))
        extra = {"user": reader.uid, "group": reader.gid, "extra_groups": []}
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},
        cwd="/",
        **extra,  # type: ignore[call-overload]
    ) as proc:
        data = proc.stdout.read(limit + 1)
        if len(data) > limit:
            proc.kill()
            raise NotYours(
                f"the build context {path} is larger than {limit // (1024 * 1024)} MiB",
                "build from a directory holding only the Dockerfile and the files it copies",
            )
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise NotYours(err or f"cannot read the build context {path}", CONTEXT_HINT)
    return data


CONTEXT_HINT = "build from a directory of yours in your home, holding a Dockerfile"


# ---- what a Dockerfile may ask --------------------------------------------------------------


#: the instructions ``labctl app build`` takes; ADD (URLs, archives), ONBUILD (instructions
#: run in someone else's build) and VOLUME (volumes left on the host) are refused
INSTRUCTIONS = frozenset({
    "FROM", "COPY", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "EXPOSE", "WORKDIR", "LABEL",
    "USER", "HEALTHCHECK", "STOPSIGNAL",
})  # fmt: skip
#: the largest Dockerfile taken (it is parsed here, as root)
DOCKERFILE_LIMIT = 64 * 1024
#: a Dockerfile is printable ASCII, tabs and newlines: nothing the engine reads otherwise
_TEXT = re.compile(r"[\t\x20-\x7e]*")
_DIRECTIVE = re.compile(r"#\s*[A-Za-z]+\s*=")
_CONTINUED = re.compile(r"\\[ \t]*$")
_STAGE = re.compile(r"[a-z][a-z0-9._-]*")
_FLAG = re.compile(r"--([a-z]+)=([^\s'\"\\$]+)")
#: the flags an instruction may carry, ``--NAME=VALUE`` only
_FLAGS = {"FROM": frozenset(), "COPY": frozenset({"from", "chown", "chmod"})}


def _instructions(text: str, where: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) of a Dockerfile in the plain subset labctl takes.

    Rather than read every Dockerfile as the engine would, take only files that any reader
    reads the same: printable ASCII, no parser directive (``# escape=``, ``# syntax=``), a
    continuation is a backslash at the end of the line, and no blank or comment line inside
    a continued instruction (the engine skips them, a simpler reader would not).
    """
    found: list[tuple[int, str, str]] = []
    start, parts = 0, list[str]()
    lines = text.split("\n")  # only newlines end a line, as for the engine
    if lines and lines[-1] == "":
        lines.pop()  # the file's last newline
    for number, line in enumerate(lines, 1):
        if not _TEXT.fullmatch(line):
            raise _bad(where, number, "a Dockerfile here is printable ASCII text and tabs")
        stripped = line.strip(" \t")
        if _DIRECTIVE.match(stripped):
            raise _bad(where, number, "parser directives (# escape=, # syntax=) are not taken")
        if not stripped or stripped.startswith("#"):
            if parts:
                raise _bad(where, number, "a blank or comment line inside a continued line")
            continue
        if not parts:
            start = number
        if _CONTINUED.search(stripped):
            parts.append(_CONTINUED.sub("", stripped))
            continue
        parts.append(stripped)
        word, _, args = " ".join(parts).partition(" ")
        found.append((start, word.upper(), args.strip()))
        parts = []
    if parts:
        raise _bad(where, start, "the last instruction ends in a continuation")
    return found


def dockerfile_sources(text: str, where: str = "Dockerfile") -> list[tuple[int, str]]:
    """The images a Dockerfile builds from (``FROM``, ``COPY --from``): (line, reference).

    Raises :class:`SpecError` at the line for what ``labctl app build`` never runs: an
    instruction outside :data:`INSTRUCTIONS`, a quote, backslash or variable in what
    ``FROM`` or ``COPY`` name, a flag not written ``--NAME=VALUE`` or not one they take,
    a stage name outside ``[a-z][a-z0-9._-]*``. Stage names are resolved, not returned.
    """
    stages: set[str] = set()
    refs: list[tuple[int, str]] = []
    count = 0
    for line, word, args in _instructions(text, where):
        if word not in INSTRUCTIONS:
            hint = "use COPY" if word == "ADD" else f"take out {word}"
            raise _bad(where, line, f"{word} is not taken by labctl app build ({hint})")
        if word not in _FLAGS:
            if word == "RUN" and args.startswith("--"):
                raise _bad(where, line, "RUN takes no flags here")
            continue
        words = args.split()
        if any(set(w) & set("'\"\\$") for w in words):
            raise _bad(where, line, f"{word} names files and images plainly (no quotes, $ or \\)")
        flags = {}
        for w in (w for w in words if w.startswith("-")):
            m = _FLAG.fullmatch(w)
            if m is None or m.group(1) not in _FLAGS[word]:
                takes = ", ".join(f"--{f}=VALUE" for f in sorted(_FLAGS[word])) or "no flags"
                raise _bad(where, line, f"{word} takes {takes} here, not {w}")
            flags[m.group(1)] = m.group(2)
        rest = [w for w in words if not w.startswith("-")]
        if word == "FROM":
            if len(rest) not in (1, 3) or (len(rest) == 3 and rest[1].lower() != "as"):
                raise _bad(where, line, "FROM IMAGE, or FROM IMAGE AS NAME")
            if rest[0] not in stages:
                refs.append((line, rest[0]))
            if len(rest) == 3:
                if not _STAGE.fullmatch(rest[2]):
                    raise _bad(where, line, f"a stage name is [a-z][a-z0-9._-]*, not {rest[2]}")
                stages.add(rest[2])
            stages.add(str(count))
            count += 1
        elif count == 0:
            raise _bad(where, line, "a Dockerfile starts FROM an image")
        elif "from" in flags and flags["from"] not in stages:
            refs.append((line, flags["from"]))
    if count == 0:
        raise _bad(where, 1, "a Dockerfile starts FROM an image")
    return refs


def _bad(where: str, line: int, what: str) -> SpecError:
    return SpecError(
        f"{where}:{line}: {what}",
        "labctl app build starts from the lab's images (labctl/webapp:latest) or your own, "
        "and copies files of your directory",
    )


def no_app_network() -> HostError:
    """The error when a lab has no Docker network for a student's containers."""
    return HostError(
        "this lab has no Docker network: labctl app works in labs with a Docker guest",
        "bring the lab up first (labctl up, or labctl class up for a class)",
    )
