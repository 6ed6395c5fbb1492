"""Exercise files (``labs/<lab>/exercises/*.yaml``): validated like the lab spec.

Unknown keys are rejected and every error names the file, the line and the field. Beyond
what pydantic checks, the loader makes sure each check targets one of the exercise's guests
(or ``host``) and that every ``{placeholder}`` names something that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from labctl.errors import SpecError
from labctl.exercises import template
from labctl.exercises.facts import FACT_VALUES, FactName
from labctl.exercises.words import normalise, options_problem
from labctl.i18n import Lang
from labctl.spec import yamlpos
from labctl.spec.model import HOST, STUDENT, Grading, Strict, Technique
from labctl.spec.validate import json_schema as schema_of
from labctl.spec.validate import validate

ID_RE = r"^[a-z][a-z0-9-]{0,39}$"
TECHNIQUES: tuple[Technique, ...] = get_args(Technique)
TARGET = (
    "Guest name; `host` (the lab host, as root); or `student` (the lab host as the student "
    "doing the exercise: their account, `~` their home; root in a lab of one's own)."
)
HINT = "see the exercises of labs/virtualization; `labctl exercise schema` prints the JSON Schema"


class Text(Strict):
    """A text (Markdown) in Spanish and in English; both are required."""

    es: str = Field(min_length=1, description="Spanish.")
    en: str = Field(min_length=1, description="English.")

    def get(self, lang: Lang) -> str:
        """The text in ``lang``."""
        return self.es if lang == "es" else self.en


class ParamSpec(Strict):
    """A per-student value: ``name`` (prefix + letters), ``port`` or ``token`` (hex)."""

    kind: Literal["name", "port", "token"] = Field(description="What kind of value.")
    prefix: str = Field(
        "alu", pattern=r"^[a-z][a-z0-9-]{0,11}$", description="name: fixed start of the value."
    )
    length: int = Field(5, ge=3, le=32, description="name: letters after the prefix; token: hex.")
    min: int = Field(20000, ge=1024, le=65535, description="port: lowest port.")
    max: int = Field(29999, ge=1024, le=65535, description="port: highest port.")

    @model_validator(mode="after")
    def _range(self) -> ParamSpec:
        if self.min > self.max:
            raise ValueError("min must not be above max")
        return self


def _regex(value: str) -> str:
    try:
        re.compile(template.PLACEHOLDER.sub("x", value))
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


#: A regular expression (searched, multi-line); placeholders allowed.
Regex = Annotated[str, AfterValidator(_regex)]


class CheckBase(Strict):
    """What every check has: what it looks at, and a teacher's note for when it fails."""

    what: Text = Field(description="What is checked, one line shown before the result.")
    note: Text | None = Field(None, description="A teacher's note shown when the check fails.")


class CommandCheck(CheckBase):
    """Run a command in a guest (or on the host); expect an exit code and/or output."""

    kind: Literal["command"]
    target: str = Field(description=TARGET)
    run: str = Field(min_length=1, description="Shell command (placeholders allowed).")
    rc: int | None = Field(0, description="Expected exit code; null: any.")
    stdout: Regex | None = Field(None, description="Regular expression the output must match.")


class FileCheck(CheckBase):
    """A file in a guest (or on the host): exists, mode, owner, contents."""

    kind: Literal["file"]
    target: str = Field(description=TARGET)
    path: str = Field(min_length=1, description="Absolute path (or ~/... on the host).")
    exists: bool = Field(True, description="false: the file must not exist.")
    mode: str | None = Field(None, pattern=r"^[0-7]{3,4}$", description="Octal mode, e.g. 600.")
    mode_at_most: str | None = Field(
        None,
        pattern=r"^[0-7]{3,4}$",
        description="Octal: no permission beyond these, e.g. 755 (nobody but the owner writes).",
    )
    owner: str | list[str] | None = Field(
        None,
        min_length=1,
        description="Owner's user name, or the names any of which may own it.",
    )
    contains: Regex | None = Field(None, description="Regular expression the content must match.")


class ServiceCheck(CheckBase):
    """A systemd service in a guest: running and/or enabled."""

    kind: Literal["service"]
    target: str = Field(description="Guest name (it must run systemd).")
    name: str = Field(min_length=1, description="Unit name, e.g. nginx or web.service.")
    running: bool | None = Field(True, description="Expected active state; null: not checked.")
    enabled: bool | None = Field(None, description="Expected enabled state; null: not checked.")


class PortCheck(CheckBase):
    """A TCP port in a guest: listening or not (read from /proc/net/tcp, no tool needed)."""

    kind: Literal["port"]
    target: str = Field(description=TARGET)
    port: int | str = Field(description="Port number, or a placeholder like {param.port}.")
    listening: bool = Field(True, description="false: nothing may listen there.")


class HttpCheck(CheckBase):
    """An HTTP request from the host: expect a status and a body."""

    kind: Literal["http"]
    url: str = Field(description="URL, e.g. http://127.0.0.1:{guest.docker-app.port}/.")
    status: int = Field(200, ge=100, le=599, description="Expected HTTP status.")
    body: Regex | None = Field(None, description="Regular expression the body must match.")

    @property
    def target(self) -> str:
        """HTTP checks always run from the host."""
        return HOST


class Measure(Strict):
    """A value the lab measures itself: a command's last line, or a named fact."""

    target: str = Field(description=TARGET)
    run: str | None = Field(None, min_length=1, description="Shell command printing the value.")
    fact: FactName | None = Field(
        None,
        description="A fact labctl decides itself instead of a command (apt-mirror: si if "
        "apt-get update really reached the mirror, else no).",
    )

    @model_validator(mode="after")
    def _run_or_fact(self) -> Measure:
        if (self.run is None) == (self.fact is None):
            raise ValueError("give exactly one of run and fact")
        return self


class Truth(Measure):
    """The true answer, measured at check time; optionally a ratio of two measurements."""

    divided_by: Measure | None = Field(
        None, description="Divide by this second measurement (for slowdowns and speed-ups)."
    )


class AnswerCheck(CheckBase):
    """Compare the student's recorded answer with what the lab measures in the guest."""

    kind: Literal["answer"]
    truth: Truth = Field(description="How the lab measures the right answer.")
    match: Literal["text", "number", "mac"] = Field(
        "text",
        description="text: equal after normalising (case, accents, quotes); number; mac: the "
        "same MAC address whatever its notation (colons, hyphens, dots, none).",
    )
    synonyms: dict[str, list[str]] = Field(
        default_factory=dict,
        description="text: answers accepted for a measured value, e.g. {ata_piix: [ide, piix]}.",
    )
    options: list[str] | None = Field(
        None,
        min_length=2,
        description="text: the answers to choose from, e.g. [tcg, kvm] (a synonym of one "
        "counts as it). `exercise show` lists them; another answer is refused, not recorded, "
        "and the lab's max_attempts applies. Every synonyms key must be one of them.",
    )
    tolerance: float | None = Field(
        None, ge=0, le=1, description="number: accepted relative error (0.3 = ±30 %)."
    )
    margin: float | None = Field(None, ge=0, description="number: accepted absolute error.")
    factor: float | None = Field(
        None, gt=1, description="number: accepted if within truth/factor .. truth*factor."
    )
    remeasure: int = Field(
        0,
        ge=0,
        le=5,
        description="number: before calling an answer wrong, measure again up to this many "
        "times; any measurement that agrees accepts it. For timings, which vary from run to "
        "run on a busy host.",
    )

    @field_validator("options")
    @classmethod
    def _closed_list(cls, options: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if options is None:
            return None
        if info.data.get("match") == "number":
            raise ValueError("options need match: text")
        truth = info.data.get("truth")
        values = FACT_VALUES[truth.fact] if truth is not None and truth.fact else ()
        problem = options_problem(options, info.data.get("synonyms") or {}, values)
        if problem:
            raise ValueError(problem)
        return options

    @model_validator(mode="after")
    def _fits_match(self) -> AnswerCheck:
        numeric = (self.tolerance, self.margin, self.factor)
        if self.match == "text" and any(v is not None for v in numeric):
            raise ValueError("tolerance, margin and factor need match: number")
        if self.match == "text" and self.remeasure:
            raise ValueError("remeasure needs match: number")
        if self.match == "number" and self.synonyms:
            raise ValueError("synonyms need match: text")
        return self

    def spellings(self) -> dict[str, tuple[str, ...]]:
        """Each option and the other answers that count as it (its synonyms); {}: no options."""
        synonyms = {normalise(k): v for k, v in self.synonyms.items()}
        return {
            o: tuple(s for s in synonyms.get(normalise(o), []) if normalise(s) != normalise(o))
            for o in self.options or []
        }

    def is_option(self, answer: str) -> bool:
        """``answer`` is one of the options (or a synonym of one); True when there are none."""
        if self.options is None:
            return True
        given = normalise(answer)
        return any(given in {normalise(x) for x in (o, *s)} for o, s in self.spellings().items())


Check = Annotated[
    CommandCheck | FileCheck | ServiceCheck | PortCheck | HttpCheck | AnswerCheck,
    Field(discriminator="kind"),
]


class SetupCommand(Strict):
    """A command that prepares a guest for the exercise (run once per guest lifetime)."""

    target: str = Field(description="Guest name (not the host).")
    run: str = Field(min_length=1, description="Shell command, run as the guest's exec user.")


class Step(Strict):
    """One step: instructions, the checks that prove it was done, and hints."""

    id: str = Field(pattern=ID_RE, description="Step id, used by `labctl exercise answer`.")
    title: Text = Field(description="Step title.")
    instructions: Text = Field(description="What to do (Markdown, placeholders allowed).")
    hints: list[Text] = Field(default_factory=list, description="Hints, given one at a time.")
    checks: list[Check] = Field(min_length=1, description="Checks, all must pass.")

    @field_validator("checks")
    @classmethod
    def _one_answer(cls, checks: list[Check]) -> list[Check]:
        if sum(isinstance(c, AnswerCheck) for c in checks) > 1:
            raise ValueError("a step takes at most one answer check (one answer per step)")
        return checks

    @property
    def answer_check(self) -> AnswerCheck | None:
        """The step's answer check, if it asks for an answer."""
        return next((c for c in self.checks if isinstance(c, AnswerCheck)), None)


class Exercise(Strict):
    """A guided exercise on some guests of a lab."""

    id: str = Field(pattern=ID_RE, description="Exercise id (the file is [NN-]<id>.yaml).")
    technique: Technique = Field(description="The kind of virtualization it teaches.")
    title: Text = Field(description="Title.")
    instructions: Text = Field(description="Introduction (Markdown): what the student learns.")
    guests: list[str] = Field(min_length=1, description="Guests of the lab it runs against.")
    params: dict[str, ParamSpec] = Field(
        default_factory=dict, description="Per-student values, used as {param.NAME}."
    )
    setup: list[SetupCommand] = Field(
        default_factory=list, description="Commands preparing the guests (e.g. a broken service)."
    )
    steps: list[Step] = Field(min_length=1, description="Ordered steps.")
    grading: Grading | None = Field(
        None, description="Penalties and attempt limits for this exercise; default: the lab's."
    )
    vm_profile: Literal["debian"] | None = Field(
        None,
        description="The VM images it needs: 'debian' (systemd, apt, kernel modules in the "
        "VMs). On a lab brought up with the tiny VM images it is listed, and refused.",
    )

    @field_validator("params")
    @classmethod
    def _param_names(cls, params: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in params:
            if not re.match(r"^[a-z][a-z0-9_]*$", name):
                raise ValueError(f"parameter name {name!r} must match ^[a-z][a-z0-9_]*$")
        return params

    @field_validator("steps")
    @classmethod
    def _unique_steps(cls, steps: list[Step]) -> list[Step]:
        ids = [s.id for s in steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique: {', '.join(dupes)}")
        return steps

    def step(self, ref: str) -> Step:
        """A step by id or by 1-based number."""
        for i, step in enumerate(self.steps, 1):
            if ref in (step.id, str(i)):
                return step
        known = ", ".join(f"{i} ({s.id})" for i, s in enumerate(self.steps, 1))
        raise SpecError(
            f"exercise {self.id} has no step {ref!r}",
            f"steps: {known}",
            es=(f"el ejercicio {self.id} no tiene ningún paso {ref!r}", f"pasos: {known}"),
        )


# ---- loading -------------------------------------------------------------------------------


def _cross_problems(data: Any, guests: set[str], params: set[str]) -> list[tuple[tuple, str]]:
    """Targets and placeholders that name nothing: (location, message) pairs."""
    problems: list[tuple[tuple, str]] = []

    def walk(node: Any, loc: tuple) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*loc, i))
        elif isinstance(node, str):
            if loc and loc[-1] == "target" and node not in guests | {HOST, STUDENT}:
                allowed = ", ".join(sorted(guests)) + f", {HOST} or {STUDENT}"
                problems.append((loc, f"{node!r} is not one of this exercise's guests ({allowed})"))
            if loc and loc[0] == "setup" and loc[-1] == "target" and node in (HOST, STUDENT):
                problems.append((loc, "setup runs in guests only, not on the host"))
            for name in template.names(node):
                problem = _placeholder_problem(name, guests, params)
                if problem:
                    problems.append((loc, problem))

    walk(data, ())
    return problems


def _placeholder_problem(name: str, guests: set[str], params: set[str]) -> str | None:
    kind, _, rest = name.partition(".")
    if kind == "param" and rest not in params:
        return f"{{{name}}}: no parameter {rest!r} in params"
    if kind == "guest":
        guest, _, field = rest.rpartition(".")
        if guest not in guests:
            return f"{{{name}}}: {guest!r} is not one of this exercise's guests"
        if field not in template.GUEST_FIELDS:
            return f"{{{name}}}: a guest has {', '.join(template.GUEST_FIELDS)}"
    return None


def load_exercise(path: Path) -> Exercise:
    """Load and validate one exercise file."""
    doc = yamlpos.load(path)
    exercise = validate(Exercise, doc, HINT)
    problems = _cross_problems(doc.data, set(exercise.guests), set(exercise.params))
    stem = re.sub(r"^\d+-", "", path.stem)
    if stem != exercise.id:
        problems.append((("id",), f"the id must match the file name ({stem!r})"))
    if problems:
        lines = [f"{path}:{doc.line_of(loc) or 1}: {_field(loc)}: {msg}" for loc, msg in problems]
        first = (
            lines[0]
            if len(lines) == 1
            else f"{len(lines)} problems in {path}:\n  " + ("\n  ".join(lines))
        )
        raise SpecError(first, HINT)
    return exercise


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_exercises(directory: Path) -> list[Exercise]:
    """Every exercise in ``directory``, in file order; ids must be unique."""
    if not directory.is_dir():
        return []
    found: dict[str, Path] = {}
    result = []
    for path in sorted(directory.glob("*.yaml")):
        exercise = load_exercise(path)
        if exercise.id in found:
            raise SpecError(
                f"{path}: id {exercise.id!r} is already used by {found[exercise.id]}",
                "give every exercise its own id",
            )
        found[exercise.id] = path
        result.append(exercise)
    return result


def json_schema() -> dict[str, object]:
    """The JSON Schema of exercise files, for editors."""
    return schema_of(Exercise, "labctl exercise")
