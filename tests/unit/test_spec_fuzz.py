"""Generated hostile files thrown at the loaders and at ``labctl lab validate``.

Whatever the file holds (random bytes, random text, YAML-ish token soup, mutated copies of
the sample lab), the loader returns a lab or raises SpecError, the command exits 0 or 2 with
an ``Error:`` line and never a traceback, and each takes well under a second.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from labctl.cli import main
from labctl.errors import SpecError
from labctl.exercises.model import load_exercise
from labctl.paths import LABS_DIR
from labctl.spec.model import DockerGuest, Lab, load_lab

SAMPLE = (LABS_DIR / "virtualization" / "lab.yaml").read_text()
BOUND = 1.0  # seconds for one load, and for one command

FUZZ = settings(
    max_examples=100,
    deadline=None,  # the bound is asserted per call below, with the reason in the message
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Pieces of YAML syntax, of the lab vocabulary and of known troublemakers.
TOKENS = [
    "\n", "\n  ", "\n    ", "  ", "- ", ": ", ":", ",", "[", "]", "{", "}", "? ", "'", '"', "|",
    ">-", "#", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "&a ", "&b ", "*a",
    "*b", "<<: *a", "<<: [*a, *b]", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ",
    "!!set ", "!!omap ", "!!python/object/apply:os.system ", "!local ", "\\e", "\\x1b", "\\0",
    "\\u202e", "\t", "\r\n", "\x1b", "\x00", "\x85", "\ufeff", "\u2028", "1e400", "0x1F", "0o9",
    "2024-13-45", "2001-12-14t21:59:43.10-05:00", "~", "null", "yes", "on", ".nan", "-.inf",
    "name", "guests", "engine", "libvirt", "lxd", "docker", "technique", "image", "vm-amd64",
    "vm-arm64", "docker-app", "lxd-system", "http_path", "@somehost:9/", "//x", "host_port",
    "memory", "arch", "aarch64", "accel", "kvm", "network", "pool", "10.0.0.0/8",
    "ready_timeout", "virtualization", "a" * 30, "../../etc",
]  # fmt: skip


def _edit(text: str, ops: list[tuple[int, int, int, str]]) -> str:
    """Apply edits: 0 insert, 1 delete a span, 2 replace a span, 3 repeat a line, 4 drop one."""
    for kind, a, b, token in ops:
        if not text:
            text = token
            continue
        i, j = sorted((a % len(text), b % len(text)))
        lines = text.splitlines(keepends=True)
        n = a % len(lines)
        if kind == 0:
            text = text[:i] + token + text[i:]
        elif kind == 1:
            text = text[:i] + text[j : j + (j - i) % 40]
        elif kind == 2:
            text = text[:i] + token + text[i + (j - i) % 20 :]
        elif kind == 3:
            text = "".join([*lines[: n + 1], lines[n], *lines[n + 1 :]])
        else:
            text = "".join([*lines[:n], *lines[n + 1 :]])
    return text


yamlish = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)), max_size=150).map(
    "".join
)
mutated = st.lists(
    st.tuples(
        st.integers(0, 4), st.integers(0, 10**6), st.integers(0, 10**6), st.sampled_from(TOKENS)
    ),
    min_size=1,
    max_size=8,
).map(lambda ops: _edit(SAMPLE, ops))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _load(path: Path) -> Lab | None:
    """load_lab: a Lab, or None for a SpecError; anything else fails the test."""
    t0 = time.monotonic()
    try:
        return load_lab(path)
    except SpecError as exc:
        assert exc.code == 2
        assert re.search(re.escape(str(path)) + r":\d+: ", exc.message), exc.message  # FILE:LINE
        return None
    finally:
        assert time.monotonic() - t0 < BOUND, f"loading {path} took too long"


def _validate(path: Path) -> tuple[int, str]:
    """``labctl lab validate PATH`` through the real entry point: exit code and stderr."""
    err = io.StringIO()
    t0 = time.monotonic()
    with (
        mock.patch("sys.argv", ["labctl", "lab", "validate", str(path)]),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
        pytest.raises(SystemExit) as exit_,
    ):
        main()
    assert time.monotonic() - t0 < BOUND, f"validating {path} took too long"
    return int(exit_.value.code or 0), err.getvalue()


def _check(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, errors="surrogatepass")
    lab = _load(path)
    code, err = _validate(path)
    assert "Traceback" not in err
    if lab is None:
        assert code == 2 and err.startswith("Error: "), err
    else:
        assert code == 0, err
    t0 = time.monotonic()
    with contextlib.suppress(SpecError):  # the exercise loader shares the YAML loader
        load_exercise(path)
    assert time.monotonic() - t0 < BOUND


@FUZZ
@given(content=st.binary(max_size=4096))
def test_random_bytes(workdir: Path, content: bytes) -> None:
    _check(workdir / "bytes.yaml", content)


@FUZZ
@given(content=st.text(max_size=2000))
def test_random_text(workdir: Path, content: str) -> None:
    _check(workdir / "text.yaml", content)


@FUZZ
@given(content=yamlish)
def test_yaml_token_soup(workdir: Path, content: str) -> None:
    _check(workdir / "soup.yaml", content)


@FUZZ
@given(content=mutated)
def test_mutated_sample_lab(workdir: Path, content: str) -> None:
    _check(workdir / "lab.yaml", content)


ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@FUZZ
@given(
    path=st.one_of(st.text(max_size=80), ascii_text.map(lambda s: "/" + s)),
    port=st.integers(1, 65535),
)
def test_an_accepted_http_path_keeps_the_probe_on_localhost(path: str, port: int) -> None:
    try:
        DockerGuest(engine="docker", technique="app-container", image="docker-app", http_path=path)
    except ValueError:
        return
    url = f"http://127.0.0.1:{port}{path}"  # as the Docker backend's readiness probe builds it
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.username) == ("127.0.0.1", port, None)
    parsed = parse_url(url)  # what requests will use
    assert (parsed.host, parsed.port, parsed.auth) == ("127.0.0.1", port, None)
