#!/usr/bin/env python3
"""Load the progress store and the dashboard: simulated students check and answer, pages timed.

A class of --students (40) with --exercises (20) of --steps (3) each, in a fresh SQLite store
(or LABCTL_DB). The dashboard (``labctl.dashboard.app`` on uvicorn, the app ``class serve``
runs, reading the store through the same ``StoreSource``) runs in its own process on
127.0.0.1. Each student is a thread in one of --procs writer processes and does what
``labctl exercise check/answer/hint`` record: every 1-4 s an answer, a hint, or the checks of
every step up to the one they are on (one attempt per step; the current step passes 35% of
the time). Meanwhile --pollers instructors ask for the grid's live fragment, the grid, a
student's page and an exercise's page, back to back. At the end every attempt the students
recorded is counted in the store and in the dashboard's grid; the bench prints a table with
the pages' p50/p95/max latency.

Usage: .venv/bin/python bench/dashboard_load.py [--duration 120] [--students 40]
       [--exercises 20] [--steps 3] [--procs 4] [--pollers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl.classroom.state import Seat
from labctl.dashboard.auth import TokenBook, digest, new_token
from labctl.dashboard.data import ClassData, ExerciseInfo, Health, StepInfo
from labctl.store import Message, NewAttempt, open_store

LAB = "bench"
PAGES = ("live grid", "grid", "student", "exercise")


def seats(n: int) -> tuple[Seat, ...]:
    return tuple(Seat(f"s{i:02d}", f"Student {i:02d}", f"bench-s{i:02d}") for i in range(1, n + 1))


def exercises(n: int, steps: int) -> tuple[ExerciseInfo, ...]:
    return tuple(
        ExerciseInfo(
            f"ex{e:02d}",
            f"Exercise {e:02d}",
            tuple(StepInfo(f"st{s}", f"Step {s}") for s in range(1, steps + 1)),
        )
        for e in range(1, n + 1)
    )


# ---- the server process -----------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """The dashboard over the bench's store, as ``class serve`` builds it."""
    import uvicorn

    from labctl.dashboard.app import Settings, create_app
    from labctl.dashboard.data import StoreSource

    data = ClassData("bench", LAB, seats(args.students), exercises(args.exercises, args.steps))
    store = open_store(args.db)
    instances = [s.instance for s in data.seats]
    health = {s.student: Health(3, 3) for s in data.seats}
    settings = Settings(
        load=lambda: data,
        source=StoreSource(store, LAB, lambda: instances),
        tokens=TokenBook(args.token_hash),
        health=lambda: health,
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=args.port, log_level="warning")


# ---- the students ------------------------------------------------------------------------------


def student_loop(
    db: str, seat: Seat, exs: tuple[ExerciseInfo, ...], deadline: float, seed: int
) -> tuple[int, int]:
    """One student until the deadline: (attempts recorded, write errors)."""
    rng = random.Random(seed)
    store = open_store(db, migrate=False)
    recorded = errors = 0
    ex_i, step_i = 0, 0
    try:
        while time.time() < deadline:
            time.sleep(rng.uniform(1.0, 4.0))
            if ex_i >= len(exs):
                ex_i, step_i = 0, 0  # done with everything: start over (a second pass)
            ex = exs[ex_i]
            now = datetime.now(timezone.utc)
            common = {"lab": LAB, "instance": seat.instance, "student": seat.student}
            roll = rng.random()
            if roll < 0.25:
                answer = rng.choice(["x86_64", "aarch64"])
                step = ex.steps[step_i].id
                batch = [NewAttempt(**common, exercise=ex.id, kind="answer", step=step,
                                    answer=answer, at=now)]  # fmt: skip
            elif roll < 0.35:
                step = ex.steps[step_i].id
                batch = [NewAttempt(**common, exercise=ex.id, kind="hint", step=step, at=now)]
            else:
                passes = rng.random() < 0.35
                batch = []
                for i, st in enumerate(ex.steps[: step_i + 1]):
                    ok = i < step_i or passes
                    msg = Message(st.id, "passed" if ok else "failed", "" if ok else "not yet")
                    batch.append(NewAttempt(**common, exercise=ex.id, kind="check", step=st.id,
                                            passed=ok, messages=(msg,), at=now))  # fmt: skip
                if passes:
                    step_i += 1
                    if step_i >= len(ex.steps):
                        ex_i, step_i = ex_i + 1, 0
            try:
                recorded += len(store.record(*batch))
            except Exception as exc:  # count it, keep going: the bench reports every failure
                errors += 1
                print(f"{seat.student}: write failed: {exc}", file=sys.stderr)
    finally:
        store.close()
    return recorded, errors


def writer(db: str, group: list[Seat], exs: tuple[ExerciseInfo, ...], deadline: float,
           out: mp.Queue) -> None:  # type: ignore[type-arg]  # fmt: skip
    """A process of students, one thread each."""
    results: list[tuple[int, int]] = []
    threads = [
        threading.Thread(
            target=lambda s=s, i=i: results.append(student_loop(db, s, exs, deadline, i))
        )
        for i, s in enumerate(group)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((sum(r[0] for r in results), sum(r[1] for r in results)))


# ---- the instructors ---------------------------------------------------------------------------


@dataclass
class Timings:
    samples: dict[str, list[float]]
    failures: int = 0


def poll(
    base: str, token: str, n: int, exs: int, deadline: float, into: Timings, seed: int
) -> None:
    rng = random.Random(seed)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    while time.time() < deadline:
        page = rng.choice(PAGES)
        path = {
            "live grid": "live/grid",
            "grid": "",
            "student": f"students/s{rng.randint(1, n):02d}",
            "exercise": f"exercises/ex{rng.randint(1, exs):02d}",
        }[page]
        t0 = time.perf_counter()
        r = http.get(base + path, timeout=30)
        took = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            into.failures += 1
        into.samples[page].append(took)
        time.sleep(0.1)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: argparse.Namespace) -> int:
    tmp = tempfile.TemporaryDirectory(prefix="labctl-dash-bench-")
    db = os.environ.get("LABCTL_DB") or f"sqlite:///{Path(tmp.name) / 'labctl.db'}"
    open_store(db).close()  # migrated once, before anyone writes
    token, port = new_token(), free_port()
    base = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--db", db, "--port", str(port),
         "--token-hash", digest(token), "--students", str(args.students),
         "--exercises", str(args.exercises), "--steps", str(args.steps)],
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                requests.get(base + "login", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        people, exs = seats(args.students), exercises(args.exercises, args.steps)
        start = time.time()
        deadline = start + args.duration
        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        groups = [list(people[i :: args.procs]) for i in range(args.procs)]
        procs = [mp.Process(target=writer, args=(db, g, exs, deadline, out)) for g in groups if g]
        for p in procs:
            p.start()
        timings = Timings({p: [] for p in PAGES})
        pollers = [
            threading.Thread(
                target=poll, args=(base, token, args.students, args.exercises, deadline, timings, i)
            )  # fmt: skip
            for i in range(args.pollers)
        ]
        for t in pollers:
            t.start()
        counts = [out.get() for _ in procs]
        for p in procs:
            p.join()
        for t in pollers:
            t.join()
        elapsed = time.time() - start
        recorded = sum(c[0] for c in counts)
        errors = sum(c[1] for c in counts)
        store = open_store(db, migrate=False)
        in_store = len(store.attempts(LAB))
        store.close()
        grid = requests.get(base + "api/grid", headers={"Authorization": f"Bearer {token}"},
                            timeout=60).json()  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
        tmp.cleanup()

    print(f"\n{args.students} students × {args.exercises} exercises × {args.steps} steps, "
          f"{elapsed:.0f} s, {args.procs} writer processes, {args.pollers} pollers, "
          f"store {db.split(':')[0]}")  # fmt: skip
    print(f"attempts recorded by the students  {recorded:>8}  ({recorded / elapsed:.1f}/s)")
    print(f"attempts in the store              {in_store:>8}")
    print(f"attempts on the dashboard's grid   {grid['attempts']:>8}")
    print(f"write errors                       {errors:>8}")
    print(f"page errors (not 200)              {timings.failures:>8}")
    print(f"\n{'page':<12}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    every: list[float] = []
    for page in PAGES:
        xs = timings.samples[page]
        every += xs
        if xs:
            print(f"{page:<12}{len(xs):>9}{statistics.median(xs):>9.1f}{pct(xs, 95):>9.1f}"
                  f"{max(xs):>9.1f}")  # fmt: skip
    print(f"{'all pages':<12}{len(every):>9}{statistics.median(every):>9.1f}"
          f"{pct(every, 95):>9.1f}{max(every):>9.1f}")  # fmt: skip
    ok = recorded == in_store == grid["attempts"] and not errors and not timings.failures
    p95 = pct(every, 95)
    print(f"\nevery attempt recorded: {'yes' if ok else 'NO'}; dashboard p95 {p95:.0f} ms "
          f"({'under' if p95 < 200 else 'OVER'} 200 ms)")  # fmt: skip
    return 0 if ok and p95 < 200 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--exercises", type=int, default=20)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--procs", type=int, default=4, help="writer processes")
    parser.add_argument("--pollers", type=int, default=2, help="instructors polling")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token-hash", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    sys.exit(run(args))


if __name__ == "__main__":
    main()
