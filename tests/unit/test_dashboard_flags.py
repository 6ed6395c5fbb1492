"""The dashboard's marks and cells on synthetic attempts: stuck, idle, looks copied, late."""

from __future__ import annotations

from dataclasses import replace

from labctl.dashboard import flags, views
from labctl.dashboard.data import Attempt, ExerciseInfo, StepInfo
from labctl.dashboard.flags import Rules
from tests.unit import dashboard_data as d
from tests.unit.dashboard_data import at


def check(
    student: str,
    step: str,
    minute: float,
    passed: bool,
    answer: str | None = None,
    exercise: str = "emu",
) -> Attempt:
    return Attempt(student, exercise, step, "check", at(minute), passed, answer, (f"{step}: x",))


def test_failing_the_same_check_three_times_in_a_row_marks_the_step() -> None:
    rules = Rules(failures_in_a_row=3)
    two = [check("bo", "arch", 1, False), check("bo", "arch", 2, False)]
    assert flags.failing("bo", two, rules) == []
    three = [*two, check("bo", "arch", 3, False)]
    (flag,) = flags.failing("bo", three, rules)
    assert (flag.kind, flag.exercise, flag.step) == ("failing", "emu", "arch")
    assert "3 times in a row: arch: x" in flag.detail
    # a pass in between, or a reset, starts the count again
    assert (
        flags.failing(
            "bo", [*two, check("bo", "arch", 2.5, True), check("bo", "arch", 3, False)], rules
        )
        == []
    )
    reset = Attempt("bo", "emu", None, "reset", at(2.5))
    assert flags.failing("bo", [*two, reset, check("bo", "arch", 3, False)], rules) == []
    # other steps do not add up
    assert flags.failing("bo", [*two, check("bo", "run", 3, False)], rules) == []
    # a check runs every step: one the student has not reached yet is not marked
    ahead = [
        c
        for m in (1, 2, 3)
        for c in (
            check("bo", "arch", m, True),
            check("bo", "run", m, False),
            check("bo", "end", m, False),
        )
    ]
    order = {"emu": ["arch", "run", "end"]}
    assert [f.step for f in flags.failing("bo", ahead, rules, order)] == ["run"]
    assert [f.step for f in flags.failing("bo", ahead, rules)] == ["run", "end"]  # no order


def test_no_progress_for_the_idle_time_marks_a_student_with_work_left() -> None:
    rules = Rules(idle_minutes=10)
    work = [
        check("ana", "arch", 1, True),
        check("ana", "run", 5, False),
        check("ana", "run", 9, False),
    ]
    assert flags.idle("ana", work, True, at(10), rules) is None  # 9 min since the last pass
    flag = flags.idle("ana", work, True, at(12), rules)
    assert flag is not None and flag.detail == "no progress for 11 min"
    assert flags.idle("ana", work, False, at(60), rules) is None  # everything done
    assert flags.idle("ana", [], True, at(60), rules) is None  # never started, no window
    # nothing done at all, once the exam window has been open that long
    assert flags.idle("ana", [], True, at(9), rules, opened=at(0)) is None
    nothing = flags.idle("ana", [], True, at(15), rules, opened=at(0))
    assert nothing is not None and nothing.detail == "nothing done in 15 min"
    # checking again and again without passing is no progress
    busy = [check("ana", "arch", 1, False), *(check("ana", "arch", m, False) for m in range(2, 30))]
    assert flags.idle("ana", busy, True, at(30), rules) is not None


def test_the_same_wrong_answer_from_several_students_is_marked_for_a_look() -> None:
    rules = Rules(same_wrong_students=3)
    wrong = [
        check(s, "arch", i, False, a)
        for i, (s, a) in enumerate(
            [("a", "x86_64"), ("b", "X86_64 "), ("c", "x86_64"), ("d", "i386")]
        )
    ]
    (flag,) = flags.same_wrong_answer(wrong, rules)
    assert flag.students == ("a", "b", "c") and flag.copied and "'x86_64'" in flag.detail
    assert flags.same_wrong_answer(wrong[:2], rules) == []
    # the same student three times is one student
    assert (
        flags.same_wrong_answer([check("a", "arch", i, False, "x") for i in range(3)], rules) == []
    )


def test_correct_answers_seconds_apart_are_grouped() -> None:
    rules = Rules(seconds_apart=10)
    ok = [
        check("a", "arch", 1, True, "aarch64"),
        check("b", "arch", 1.1, True, "aarch64"),
        check("c", "arch", 1.2, True, "aarch64"),
        check("d", "arch", 5, True, "aarch64"),
        check("e", "arch", 9, True, "aarch64"),
        check("f", "arch", 9.1, True, "aarch64"),
    ]
    found = flags.seconds_apart(ok, rules)
    assert [f.students for f in found] == [("a", "b", "c"), ("e", "f")]
    assert found[0].detail == "3 correct answers within 12 s"
    # a check without an answer (a configuration step) is no answer to copy
    assert (
        flags.seconds_apart([check("a", "run", 1, True), check("b", "run", 1, True)], rules) == []
    )


def test_cells_count_steps_since_the_last_reset_and_only_scored_passes() -> None:
    ex = d.DATA.exercises[0]
    runs = [
        Attempt("ana", "emu", None, "start", at(0)),
        check("ana", "arch", 1, True, "aarch64"),
        Attempt("ana", "emu", "arch", "hint", at(1.5)),
        check("ana", "run", 2, True),
    ]
    c = views.cell(ex, runs, set())
    assert (c.done, c.steps, c.attempts, c.hints, c.state, c.seconds) == (2, 2, 2, 1, "done", 120)
    # its time stops when it is done: checking again later adds none
    assert views.cell(ex, [*runs, check("ana", "run", 30, True)], set()).seconds == 120
    again = [*runs, Attempt("ana", "emu", None, "reset", at(3)), check("ana", "arch", 4, True)]
    c = views.cell(ex, again, set())
    assert (c.label, c.seconds) == ("1/2", 60)  # from the reset to the last thing done
    late = Attempt("ana", "emu", "run", "check", at(5), True, scored=False)
    c = views.cell(ex, [*again, late], set())
    assert (c.label, c.late, c.state) == ("1/2", 1, "in-progress")
    assert views.cell(ex, [], set()).state == "not-started"
    assert views.cell(ex, [check("bo", "arch", 1, False)], {"emu"}).state == "stuck"


def test_the_grid_has_a_row_per_student_and_a_cell_per_exercise() -> None:
    g = views.grid(d.DATA, d.SOURCE.attempts(), d.HEALTH, d.NOW, d.RULES)
    assert [r.seat.student for r in g.rows] == ["ana", "bo", "cy"]
    assert all(len(r.cells) == 2 for r in g.rows)
    ana, bo, cy = g.rows
    assert ana.cells[0].state == "done" and ana.health == d.HEALTH["ana"] and cy.health is None
    assert [f.kind for f in bo.flags] == ["idle", "failing"]
    assert {f.kind for f in g.copied} == {"same-wrong-answer", "seconds-apart"}
    # answers given and checks run, as the cells count them (no start, no hint)
    assert g.attempts == sum(c.attempts for r in g.rows for c in r.cells) == 3 + 4 + 4


def test_attempts_after_the_window_are_late_even_if_recorded_as_scored() -> None:
    after = check("ana", "kvm-none", 61, True, exercise="kvm")  # the window ends at minute 60
    late = Attempt("ana", "kvm", "accel", "check", at(61), True, None, ("ok",))
    g = views.grid(d.DATA, [after, late], {}, d.NOW, d.RULES)
    kvm = g.rows[0].cells[1]
    # recorded, shown late, not counted; one check of two steps is one late action, and
    # the start it records, or an instructor's reset, is none
    start = Attempt("ana", "kvm", None, "start", at(61))
    reset = Attempt("ana", "kvm", None, "reset", at(62))
    g = views.grid(d.DATA, [start, after, late, reset], {}, d.NOW, d.RULES)
    kvm = g.rows[0].cells[1]
    assert (kvm.label, kvm.late) == ("0/1", 1)
    page = views.student_page(d.DATA, d.DATA.seats[0], [late], None, d.NOW, d.RULES)
    assert [a.late for a in page.attempts] == [True]


def test_one_failure_seen_in_two_languages_is_counted_once_by_its_check() -> None:
    step = StepInfo("arch", "Which CPU?", ("the guest's CPU", "{param.user} exists"))
    exercise = ExerciseInfo("emu", "Emulation", (step,))
    data = replace(d.DATA, exercises=(exercise,))

    def failed(student: str, said: str, place: int | None) -> Attempt:
        where = () if place is None else ((place, "failed"),)
        return Attempt(
            student, "emu", "arch", "check", at(1), False, None, (said,), True, (said,), where
        )

    attempts = [
        failed("ana", "ana existe: failed: no existe", 1),
        failed("bo", "bo exists: failed: no such user", 1),
        failed("cy", "older record: failed", None),  # recorded before messages named a check
    ]
    page = views.exercise_page(data, exercise, attempts, d.NOW, d.RULES)
    assert page.steps[0].common == (("{param.user} exists: failed", 2), ("older record: failed", 1))


def test_a_step_passed_late_moves_the_student_on_but_scores_nothing() -> None:
    ex = d.DATA.exercises[0]  # emu: arch, then run; the window ends at minute 60
    theirs = [
        check("bo", "arch", 10, False),
        check("bo", "arch", 70, True),  # late: after the window
        *(check("bo", "run", 71 + i, False) for i in range(3)),
    ]
    page = views.exercise_page(d.DATA, ex, theirs, d.at(80), d.RULES)
    assert {s.id: s.passed for s in page.steps} == {"arch": 0, "run": 0} and page.completed == 0
    # practice after the end: bo is on run (as the CLI says), but the exam's page and marks
    # count the exam's attempts only: nobody is stuck, nothing is failing
    assert {s.id: (s.stuck, s.tried, s.failures) for s in page.steps} == {
        "arch": ((), 1, 1),
        "run": ((), 0, 0),
    }
    assert (
        flags.failing("bo", d.DATA.window.judged(theirs), d.RULES, {"emu": ["arch", "run"]}) == []
    )


def test_an_instructors_reset_is_not_the_students_last_activity() -> None:
    seat = d.DATA.seats[0]
    reset = Attempt(seat.student, "emu", None, "reset", at(50), made_by="instructor")
    mine = [check(seat.student, "arch", 1, False), reset]
    row = views.row(d.DATA, seat, mine, None, at(60), Rules(idle_minutes=30))
    assert row.last_at == at(1)
    # nor progress: a student who did nothing since minute 1 is idle at minute 60
    assert [f.kind for f in row.flags] == ["idle"]
    # an exercise the instructor reset is back to never started, its clock stopped
    (cell,) = [c for c in row.cells if c.exercise == "emu"]
    assert (cell.state, cell.done, cell.seconds) == ("not-started", 0, 0.0)
    # a student whose only record is the instructor's reset did nothing: idle counts from the
    # window's opening, not from the reset
    opened = at(0)
    only = [replace(reset, at=at(55))]
    assert flags.idle(seat.student, only, True, at(60), Rules(idle_minutes=30), opened) is not None
    assert flags.idle(seat.student, only, True, at(60), Rules(idle_minutes=30)) is None


def test_an_exercise_page_names_the_wrong_answers_most_students_gave() -> None:
    ex = d.DATA.exercises[0]

    def judged(student: str, answer: str, right: bool) -> Attempt:
        return replace(check(student, "arch", 1, right, answer), answer_passed=right)

    attempts = [
        judged("ana", "x86_64", False),
        judged("ana", "x86_64", False),  # checked again: still one student
        judged("bo", " X86_64 ", False),  # spelt otherwise: the same answer
        judged("cy", "arm", False),
        judged("cy", "aarch64", True),
        check("dan", "arch", 1, False, "i386"),  # failed for another check: not judged wrong
    ]
    page = views.exercise_page(d.DATA, ex, attempts, d.NOW, d.RULES)
    assert page.steps[0].wrong_answers == (("x86_64", 2), ("arm", 1))
    assert page.steps[1].wrong_answers == ()


def test_practice_after_the_exam_neither_looks_copied_nor_counts_as_a_misconception() -> None:
    ex = d.DATA.exercises[0]

    def late(student: str, answer: str, right: bool, second: float) -> Attempt:
        judged = check(student, "arch", 70 + second / 60, right, answer)
        return replace(judged, answer_passed=right, scored=False)

    practice = [late(s, "x86_64", False, i) for i, s in enumerate(("ana", "bo", "cy"))]
    practice += [late(s, "aarch64", True, 5 + i * 0.1) for i, s in enumerate(("ana", "bo"))]
    assert flags.copied(practice, Rules(same_wrong_students=2, seconds_apart=10)) == []
    page = views.exercise_page(d.DATA, ex, practice, d.at(80), d.RULES)
    assert page.steps[0].wrong_answers == ()
    scored = [replace(a, scored=True) for a in practice]  # the same, inside the exam: marked
    kinds = {f.kind for f in flags.copied(scored, Rules(same_wrong_students=2, seconds_apart=10))}
    assert kinds == {"same-wrong-answer", "seconds-apart"}


def test_a_student_whose_exercise_was_reset_is_stuck_nowhere_until_failing_again() -> None:
    ex = d.DATA.exercises[0]
    failed = [check("bo", "arch", m, False) for m in (1, 2, 3)]
    reset = Attempt("bo", "emu", None, "reset", at(4), made_by="instructor")
    page = views.exercise_page(d.DATA, ex, [*failed, reset], d.at(10), d.RULES)
    assert page.steps[0].stuck == () and page.steps[0].failures == 3  # the failures stay told
    again = views.exercise_page(
        d.DATA, ex, [*failed, reset, check("bo", "arch", 5, False)], d.at(10), d.RULES
    )
    assert again.steps[0].stuck == ("bo",)
