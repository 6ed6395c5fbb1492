"""A synthetic class for the dashboard's tests: three students, two exercises, known attempts."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from labctl.classroom.state import Seat
from labctl.classroom.window import Window
from labctl.dashboard.auth import TokenBook, digest
from labctl.dashboard.data import (
    Attempt,
    ClassData,
    ExerciseInfo,
    Health,
    ListSource,
    StepInfo,
)
from labctl.dashboard.flags import Rules

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(minutes=30)
INSTRUCTOR, ANA, BO = "instructor-token-0123456789", "ana-token-0123456789", "bo-token-0123456"

DATA = ClassData(
    "demo",
    "virtualization",
    (
        Seat("ana", "Ana García", "demo-ana"),
        Seat("bo", "Bo Núñez", "demo-bo"),
        Seat("cy", "Cy <script>", "demo-cy"),
    ),
    (
        ExerciseInfo("emu", "Emulation", (StepInfo("arch", "Which CPU?"), StepInfo("run", "Run"))),
        ExerciseInfo("kvm", "KVM", (StepInfo("accel", "Accelerated?"),)),
    ),
    Window(T0, T0 + timedelta(hours=1)),
)

HEALTH = {"ana": Health(3, 3), "bo": Health(2, 3, "vm: not running")}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def attempts() -> list[Attempt]:
    """Ana finishes emu; Bo fails emu/arch four times with the wrong answer Cy gives too."""
    a = [
        Attempt("ana", "emu", None, "start", at(1)),
        Attempt("ana", "emu", "arch", "answer", at(2), answer="aarch64"),
        Attempt("ana", "emu", "arch", "check", at(3), True, "aarch64", ("arch: passed",)),
        Attempt("ana", "emu", "run", "check", at(4), True, None, ("ran: passed",)),
        Attempt("ana", "kvm", "accel", "hint", at(5)),
        Attempt("bo", "emu", None, "start", at(1)),
    ]
    for i in range(4):
        a.append(
            Attempt(
                "bo",
                "emu",
                "arch",
                "check",
                at(2 + i),
                False,
                "x86_64",
                ("arch: failed: the guest's CPU is not x86_64",),
                answer_passed=False,
            )
        )
    cy_wrong = Attempt("cy", "emu", "arch", "check", at(2.5), False, " X86_64", ("arch: failed",))
    a.append(replace(cy_wrong, answer_passed=False))
    a.append(Attempt("cy", "emu", "arch", "check", at(3.05), True, "aarch64", ("arch: passed",)))
    a.append(Attempt("cy", "kvm", "accel", "check", at(29), False, "x86_64", ("accel: failed",)))
    a.append(Attempt("cy", "emu", "run", "check", at(70), True, None, ("ran: passed",), False))
    return a


#: two students giving one wrong answer are enough to mark it here (the default is three)
RULES = Rules(idle_minutes=10, same_wrong_students=2)
SOURCE = ListSource(attempts())
TOKENS = TokenBook(digest(INSTRUCTOR), {"ana": digest(ANA), "bo": digest(BO)})
