"""Validate located YAML against a pydantic model; errors name the file, line and field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from labctl.errors import SpecError
from labctl.spec.yamlpos import Located

M = TypeVar("M", bound=BaseModel)


def _data_loc(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Keep the parts of a pydantic location that exist in the document.

    Tagged unions add the tag (``libvirt``) to locations; it is not a key of the YAML.
    """
    kept: list[str | int] = []
    for part in loc:
        present = (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        )
        if present:
            data = data[part]
            kept.append(part)
        elif isinstance(data, (dict, list)) and part == loc[-1]:
            kept.append(part)  # a missing or unknown key: name it, point at its parent
    return tuple(kept)


def _field(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _said(error: Any) -> str:
    """pydantic's message for one problem, said with the value the file holds."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    if kind == "union_tag_invalid":
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not have the form {ctx.get('pattern')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{value!r} is not a whole number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{value!r} is not true or false"
    return str(error["msg"])


def validate(
    model: type[M],
    doc: Located,
    hint: str = "`labctl lab schema` prints every key with its type and meaning; "
    "labs/virtualization/lab.yaml is a whole example",
) -> M:
    """Build ``model`` from ``doc``; raise one SpecError listing every problem with its line."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = _data_loc(doc.data, tuple(error["loc"]))
            if error["type"] == "union_tag_invalid":  # point at the tag, not its mapping
                loc = (*loc, str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
            line = doc.line_of(loc)
            where = f"{doc.path}:{line}" if line else str(doc.path)
            problems.append(f"{where}: {_field(loc)}: {_said(error)}")
        first, *rest = problems
        if rest:
            first = f"{len(problems)} problems in {doc.path}:\n  " + "\n  ".join(problems)
        raise SpecError(first, hint) from exc


def json_schema(model: type[BaseModel], title: str) -> dict[str, object]:
    """``model``'s JSON Schema (draft 2020-12) titled ``title``, for editors."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema
