"""``{param.user}``-style placeholders in exercise text and checks.

Only these names are placeholders, so shell (``${x}``, ``awk '{print $1}'``) and regular
expressions (``\\d{3}``) pass through untouched:

- ``{student}``, ``{instance}``, ``{lab}``
- ``{param.NAME}``: a per-student parameter of the exercise
- ``{guest.NAME.FIELD}``: what the lab knows about a guest (FIELD in :data:`GUEST_FIELDS`)

``{guest.NAME.accel}`` is the accelerator a VM really runs under (``kvm`` or ``tcg``, as
``labctl status`` shows it). Text that depends on it names it through this placeholder and
says what each accelerator means, instead of assuming one: the same exercise runs on hosts
with usable KVM and on hosts without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from labctl.errors import LabctlError

PLACEHOLDER = re.compile(
    r"\{(student|instance|lab|param\.[a-z][a-z0-9_]*|guest\.[a-z][a-z0-9-]*\.[a-z_]+)\}"
)
GUEST_FIELDS = ("address", "port", "resource", "ready_seconds", "boot_seconds", "accel")

M = TypeVar("M", bound=BaseModel)


class TemplateError(LabctlError):
    """A placeholder has no value (e.g. the guest it names is not up)."""


def names(text: str) -> list[str]:
    """The placeholder names used in ``text``."""
    return PLACEHOLDER.findall(text)


def render(text: str, values: Mapping[str, str], *, strict: bool = True) -> str:
    """Replace every placeholder; a missing value raises, or stays as is when not strict."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        if strict:
            raise TemplateError(
                f"no value for {{{name}}}",
                "bring the lab up (labctl up) so the exercise can name its guests",
            )
        return match.group(0)

    return PLACEHOLDER.sub(one, text)


def _render_obj(obj: Any, values: Mapping[str, str], strict: bool) -> Any:
    if isinstance(obj, str):
        return render(obj, values, strict=strict)
    if isinstance(obj, dict):
        return {k: _render_obj(v, values, strict) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_render_obj(v, values, strict) for v in obj]
    return obj


def render_model(model: M, values: Mapping[str, str], *, strict: bool = True) -> M:
    """A copy of ``model`` with every string field rendered (validated again)."""
    data = _render_obj(model.model_dump(), values, strict)
    return type(model).model_validate(data)
