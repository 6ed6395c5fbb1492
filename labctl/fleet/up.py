"""``class up --hosts``: a class over several lab hosts.

The controller (where the instructor runs labctl) drives every lab host through Ansible
(ansible-runner, all hosts at once up to ``forks``) and never logs in by hand:

``validate, reach, lock, record, setup, install, images, measure, place, labs, sheets``

- **reach** asks every host for its distribution over SSH. On a class's first run, a host
  that does not answer, or runs an unsupported system, stops everything before anything is
  created anywhere. Later, a host that stopped answering is marked failed and the rest go on.
- **setup** runs ``playbooks/host-setup.yml`` on every host, **install** puts this labctl
  there (``fleet-install.yml``, a wheelhouse built once here), **images** ships the lab's
  images built here (``fleet-images.yml``, checksummed, nothing for a host that has them) and
  has the host make its engine images, **measure** asks each host's own ``class plan`` how
  many students it fits, **place** spreads the students by that (``place.place``), **labs**
  runs ``labctl class up`` on each host with its part of the roster and the host's address
  for the students' sheets, **sheets** brings the access sheets back here.

A host's failure at any stage marks it failed with the stage and Ansible's words; its
students are reported with that reason, and ``--replace-failed`` moves them to the others.
A rerun does only what is missing: every remote step is idempotent on the host.
"""

from __future__ import annotations

import base64
import csv
import io
import shlex
import tarfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.classroom import sheet
from labctl.classroom import window as exam
from labctl.classroom.lifecycle import remember_seats
from labctl.classroom.roster import Roster, Student, check_class, check_size, instance_of
from labctl.classroom.state import FAILED, PENDING, UP, ClassDir, ClassState, Seat, seat_of
from labctl.console import plural
from labctl.errors import HostError, LabctlError
from labctl.exercises.progress import now
from labctl.fleet import place as placing
from labctl.fleet import ship
from labctl.fleet import state as fleet_state
from labctl.fleet.inventory import Inventory
from labctl.fleet.remote import REMOTE_LABCTL, REMOTE_STATE, Refused, Runner, answered, remote_dir
from labctl.fleet.state import READY, FleetState, HostRecord
from labctl.host.ansible import FanOut
from labctl.i18n import Lang
from labctl.images.cache import ImageStore
from labctl.lab import plan as lab_plan
from labctl.paths import PLAYBOOKS_DIR
from labctl.private import private_dir, write_private
from labctl.spec.model import Lab
from labctl.stages import Reporter, Stage, execute, quiet

#: Debian and Ubuntu releases labctl sets up (as ``bootstrap``)
SUPPORTED = ("debian:12", "ubuntu:22.04", "ubuntu:24.04")


@dataclass(frozen=True)
class FleetUpResult:
    """What ``class up --hosts`` did: each host's record and each student's seat."""

    name: str
    lab: str
    hosts: tuple[HostRecord, ...]
    seats: tuple[Seat, ...]
    moved: tuple[str, ...] = ()

    @property
    def failed(self) -> list[Seat]:
        """Students whose lab is not up."""
        return [s for s in self.seats if s.outcome != UP]


@dataclass
class _FleetUp:
    """What the stages share."""

    roster: Roster
    inventory: Inventory
    name: str
    lab: Lab
    spec_path: Path
    images: ImageStore
    run: Runner
    report: Reporter = quiet
    max_parallel: int | None = None  # students' labs at once on each host (None: its cores)
    replace_failed: bool = False
    window: exam.Window | None = None  # the exam window's ends given (None: the class's kept)
    max_students: int | None = None
    lang: Lang | None = None  # the access sheets' language (None: the class's kept)
    folder: ClassDir = field(init=False)
    fleet: FleetState = field(init=False)
    cls: ClassState = field(init=False)
    moved: tuple[str, ...] = ()
    first_run: bool = True

    # -- bookkeeping ------------------------------------------------------------------------

    def save(self) -> None:
        fleet_state.save(self.folder, self.fleet)
        self.folder.save(self.cls)

    def live(self) -> list[str]:
        """The hosts that have not failed this run, in inventory order."""
        return [h for h in self.inventory.names if self.fleet.hosts[h].status != FAILED]

    def fail(self, host: str, stage: str, error: str) -> None:
        self.fleet = self.fleet.with_host(self.fleet.hosts[host].failed_at(stage, error))
        self.report(host, "failed", f"{stage}: {error.splitlines()[0] if error else ''}")

    def mark(self, host: str, stage: str) -> None:
        rec = self.fleet.hosts[host]
        if stage not in rec.done:
            self.fleet = self.fleet.with_host(replace(rec, done=(*rec.done, stage)))

    def outcome(self, stage: str, result: FanOut) -> list[str]:
        """Record each host's outcome of ``stage``; the hosts that succeeded."""
        ok = []
        for host, o in result.hosts.items():
            if o.ok:
                self.mark(host, stage)
                ok.append(host)
            else:
                self.fail(host, stage, o.failure)
        self.save()
        return ok

    def files(self) -> Path:
        """The controller's copies of what it ships for this class (rosters, per host)."""
        return private_dir(self.folder.root / "fleet-files")


# -- stages ---------------------------------------------------------------------------------


def _validate(c: _FleetUp) -> None:
    check_class(c.name)
    check_size(c.roster, c.max_students)
    c.folder = ClassDir(c.name)
    for s in c.roster.students:
        instance_of(c.name, s.id)
    previous = c.folder.load_for(c.lab.name)
    old = fleet_state.load(c.folder)
    if previous is not None and old is None:
        raise c.folder.taken(f"class {c.name} runs on this host alone, not over lab hosts")
    if old is not None:
        gone = {h for h in old.hosts if h not in c.inventory.names}
        holding = {
            s.student: s.host
            for s in (previous.seats.values() if previous else ())
            if s.host in gone
        }
        if holding:
            raise LabctlError(
                f"the inventory no longer lists {', '.join(sorted(gone))}, which holds the "
                f"labs of {', '.join(sorted(holding))}",
                "keep the host in the inventory (class down there first), or re-place those "
                "students with --replace-failed once the host is marked failed",
            )
    c.first_run = old is None
    hosts = {
        h.name: (
            old.hosts[h.name]
            if old and h.name in old.hosts
            else HostRecord(h.name, h.address, h.port, h.user)
        )
        for h in c.inventory.hosts
    }
    # a new run retries every host; what it finds decides their state again
    hosts = {
        n: replace(r, address=c.inventory.host(n).address, status=fleet_state.PENDING, error=None)
        for n, r in hosts.items()
    }
    c.fleet = FleetState(
        str(c.inventory.path),
        f"{remote_dir(c.name)}/lab",
        hosts,
        old.install_key if old else None,
    )
    c.cls = previous or ClassState(
        c.name, c.lab.name, str(c.spec_path.resolve()), str(Path(c.roster.path).resolve())
    )
    c.cls = exam.with_ends(c.cls, c.window)  # kept here (dashboard, grades), given to each host
    c.cls = replace(c.cls, lang=c.lang or c.cls.lang)
    for profile in {h.vm_profile for h in c.inventory.hosts}:  # built here, shipped later
        lab_plan.check_images(c.lab, c.images, profile)


def _host_options(c: _FleetUp) -> str:
    """What each host's ``class up`` is told besides the roster: the class's exam window and
    sheets' language as this controller keeps them, and ``--max-parallel`` when given."""
    options = ["--lang", c.cls.lang]
    options += [] if c.max_parallel is None else ["--max-parallel", str(c.max_parallel)]
    for option, value in (
        ("--window-start", c.cls.window_start),
        ("--window-end", c.cls.window_end),
    ):
        if value is not None:
            options += [option, value]
    return "".join(f" {shlex.quote(o)}" for o in options)


def _lock(c: _FleetUp) -> AbstractContextManager[object]:
    return c.folder.locked("labctl class up --hosts")


def _reach(c: _FleetUp) -> None:
    result = c.run(
        c.inventory.names,
        module="raw",
        args='. /etc/os-release && echo "$ID:$VERSION_ID" && id -u',
    )
    problems = []
    for name, o in result.hosts.items():
        words = o.stdout.split()
        why = None
        if not o.ok:
            why = f"no SSH: {o.message}" if o.unreachable else o.message
        elif len(words) < 2:
            why = f"did not say what it runs ({o.stdout.strip()[:80]!r})"
        elif words[0] not in SUPPORTED:
            why = f"runs {words[0]}, not one of {', '.join(SUPPORTED)}"
        elif words[1] != "0":
            why = "logs in as a user who is not root (give ansible_user=root or become)"
        if why is None:
            continue
        if c.first_run or c.fleet.hosts[name].done == ():
            problems.append(f"{name}: {why}")
        else:
            c.fail(name, "reach", why)
    if problems:
        raise HostError(
            "these lab hosts cannot be used; nothing was created anywhere:\n  "
            + "\n  ".join(problems),
            "fix them or take them out of the inventory, then run the same command again",
        )


def _record(c: _FleetUp) -> None:
    # read again under the lock: what another command wrote since (class window) is kept
    state = exam.with_ends(c.folder.load_for(c.lab.name) or c.cls, c.window)
    state = replace(state, lang=c.cls.lang)
    for s in c.roster.students:
        old = state.seats.get(s.id)
        fresh = seat_of(s, instance_of(c.name, s.id))
        if old is not None:
            fresh = replace(fresh, outcome=old.outcome, host=old.host, error=old.error)
        state = state.with_seat(fresh)
    c.cls = replace(state, roster=str(Path(c.roster.path).resolve()))
    c.save()
    remember_seats(c.cls)


def _setup(c: _FleetUp) -> None:
    c.outcome("setup", c.run(c.live(), playbook=PLAYBOOKS_DIR / "host-setup.yml"))


def _install(c: _FleetUp) -> None:
    wheels, key = ship.wheelhouse()
    extravars = {"labctl_wheelhouse": str(wheels), "labctl_install_key": key}
    c.outcome(
        "install",
        c.run(c.live(), playbook=PLAYBOOKS_DIR / "fleet-install.yml", extravars=extravars),
    )
    c.fleet = replace(c.fleet, install_key=key)
    c.save()


def _images(c: _FleetUp) -> None:
    # a host's VM profile (labctl_vm_profile in the inventory) decides which VM images it runs
    groups: dict[str | None, list[str]] = {}
    for name in c.live():
        groups.setdefault(c.inventory.host(name).vm_profile, []).append(name)
    for profile, hosts in groups.items():
        wanted = sorted({lab_plan.image_of(g, profile) for g in c.lab.guests.values()})
        extravars = {
            "labctl_images": [i.as_var() for i in ship.shipped(c.images, wanted)],
            "labctl_image_src": str(c.images.root),
        }
        playbook = PLAYBOOKS_DIR / "fleet-images.yml"
        ok = c.outcome("images", c.run(hosts, playbook=playbook, extravars=extravars))
        # what lives in an engine the host ships nothing for (LXD's) is made there
        build = f"{REMOTE_LABCTL} images build {shlex.join(wanted)}"
        c.outcome("images", c.run(ok, module="command", args=build))


def _roster_csv(students: list[Student]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "name", "email", "ssh_key"])
    for s in students:
        w.writerow([s.id, s.name, s.email or "", s.ssh_key or ""])
    return out.getvalue()


def _ship_lab(c: _FleetUp, hosts: list[str]) -> list[str]:
    """The lab's directory and the whole roster, on each host (for its own ``class plan``)."""
    write_private(c.files() / "roster-all.csv", _roster_csv(list(c.roster.students)))
    remote = remote_dir(c.name)
    ok = c.outcome(
        "measure",
        c.run(hosts, module="file", args=f"path={remote} state=directory mode=0700"),
    )
    ok = c.outcome(
        "measure",
        c.run(ok, module="copy", args=f"src={c.spec_path.parent}/ dest={remote}/lab/ mode=0600"),
    )
    return c.outcome(
        "measure",
        c.run(
            ok, module="copy", args=f"src={c.files()}/roster-all.csv dest={remote}/roster-all.csv"
        ),
    )


def _measure(c: _FleetUp) -> None:
    hosts = _ship_lab(c, c.live())
    remote = remote_dir(c.name)
    # the class's name: plan refuses ids that are accounts of another class (a rerun's own
    # accounts are this class's)
    plan = (
        f"{REMOTE_LABCTL} class plan {remote}/roster-all.csv {remote}/lab --class {c.name} --json"
    )
    # ``class plan`` exits 1 when the whole roster does not fit: its JSON says how many do
    result = c.run(hosts, module="shell", args=f"{plan}; true")
    for host, o in result.hosts.items():
        if not o.ok:
            c.fail(host, "measure", o.message)
            continue
        try:
            fit = int(answered(o.stdout, "class plan")["fit"])
        except Refused as exc:
            c.fail(host, "measure", str(exc))
            continue
        except (ValueError, KeyError, TypeError):
            c.fail(host, "measure", f"class plan answered {o.stdout.strip()[:200]!r}")
            continue
        c.fleet = c.fleet.with_host(replace(c.fleet.hosts[host], fits=fit))
        c.mark(host, "measure")
    c.save()


def _place(c: _FleetUp) -> None:
    live = c.live()
    current = {s: seat.host for s, seat in c.cls.seats.items() if seat.host}
    # a student already up on a live host holds room there: ``fits`` counts the rest
    fits = {h: c.fleet.hosts[h].fits or 0 for h in live}
    failed = frozenset(h for h in c.inventory.names if h not in live)
    try:
        placement = placing.place(c.roster.ids, fits, current, failed, c.replace_failed)
    except placing.OverCommit as exc:  # say why the hosts that are out are out
        lost = [
            f"{h} failed at {r.stage}: {(r.error or '').splitlines()[0] if r.error else '?'}"
            for h, r in c.fleet.hosts.items()
            if h in failed and r.status == FAILED
        ]
        if not lost:
            raise
        raise placing.OverCommit(f"{exc.message}; {'; '.join(lost)}", exc.hint) from None
    c.moved = placement.moved
    for student, host in placement.hosts.items():
        seat = c.cls.seats[student]
        if host != seat.host:
            seat = replace(seat, host=host, outcome=PENDING, error=None)
        if host in failed:
            why = c.fleet.hosts[host].error or "failed"
            seat = replace(seat, outcome=FAILED, error=f"host {host} failed: {why}")
        c.cls = c.cls.with_seat(seat)
    c.save()
    for h in live:
        c.report(h, "placed", plural(len(placement.students_on(h)), "student"))


def _labs(c: _FleetUp) -> None:
    by_host: dict[str, list[Student]] = {}
    for s in c.roster.students:
        host = c.cls.seats[s.id].host
        if host in c.live():
            by_host.setdefault(host, []).append(s)
    for host, students in by_host.items():
        write_private(c.files() / f"{host}.csv", _roster_csv(students))
    hosts = list(by_host)
    remote = remote_dir(c.name)
    ok = c.outcome(
        "labs",
        c.run(
            hosts,
            module="copy",
            args=f"src={c.files()}/{{{{ inventory_hostname }}}}.csv dest={remote}/roster.csv",
        ),
    )
    up = (
        # quoted for the host's shell (the host's labctl then checks it is a host name)
        "LABCTL_SERVER={{ ansible_host | default(inventory_hostname) | quote }} "
        f"{REMOTE_LABCTL} class up {remote}/roster.csv {remote}/lab --class {c.name} --json"
        + _host_options(c)
    )
    # ``class up`` exits 1 when a student failed: its JSON says who and why
    result = c.run(ok, module="shell", args=f"{up}; true")
    for host in hosts:
        said: dict[str, Any] = {}
        o = result.hosts.get(host)
        if o is None:
            pass  # its roster's copy failed (recorded with the reason): its students fail too
        elif not o.ok:
            c.fail(host, "labs", o.failure)
        else:
            try:
                said = {r["student"]: r for r in answered(o.stdout, "class up")["students"]}
            except Refused as exc:
                c.fail(host, "labs", str(exc))
            except (ValueError, KeyError, TypeError):
                c.fail(host, "labs", f"class up answered {o.stdout.strip()[-300:]!r}")
        for s in by_host[host]:
            seat = c.cls.seats[s.id]
            r = said.get(s.id)
            if r is None:
                why = c.fleet.hosts[host].error or "not reported by the host"
                seat = replace(seat, outcome=FAILED, error=f"host {host}: {why}")
            else:
                seat = replace(
                    seat,
                    outcome=UP if r["ok"] else FAILED,
                    error=r.get("error"),
                    seconds=r.get("seconds"),
                )
            c.cls = c.cls.with_seat(replace(seat, updated_at=now()))
        if said:
            c.mark(host, "labs")
    c.save()


def _sheets(c: _FleetUp) -> None:
    hosts = [h for h in c.live() if any(s.host == h for s in c.cls.seats.values())]
    access = f"{REMOTE_STATE}/classes/{c.name}/access"
    result = c.run(hosts, module="shell", args=f"tar -C {access} -cz . | base64 -w0")
    target = private_dir(c.folder.root / "access")
    for host, o in result.hosts.items():
        if not o.ok:
            c.fail(host, "sheets", o.failure)
            continue
        mine = {s.student for s in c.cls.seats.values() if s.host == host}
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(o.stdout)), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                owner = name.split("_", 1)[0].removesuffix(".txt")
                if not member.isfile() or owner not in mine:
                    continue  # only this host's students' sheets and keys, by plain name
                data = tar.extractfile(member)
                if data is not None:
                    text = data.read().decode()
                    if name.endswith(".txt") and (target / name).is_file():
                        # the progress page's part class serve added here stays below it
                        text += sheet.appendix((target / name).read_text())
                    write_private(target / name, text)
        c.mark(host, "sheets")
    for host in c.live():  # every stage passed, with students or none
        c.fleet = c.fleet.with_host(replace(c.fleet.hosts[host], status=READY))
    c.save()


#: ``labctl class up ROSTER LAB --hosts INVENTORY``
FLEET_UP_STAGES: tuple[Stage[_FleetUp], ...] = (
    Stage(
        "validate",
        _validate,
        describe=lambda c: (
            f"{plural(len(c.roster.students), 'student')}, "
            f"{plural(len(c.inventory.hosts), 'lab host')}"
        ),
    ),
    # before the lock: a refused first run leaves not even the class's folder behind
    Stage("reach", _reach, describe=lambda c: "SSH and the distribution of every host"),
    Stage("lock", hold=_lock, silent=True),
    Stage("record", _record, silent=True),
    Stage("setup", _setup, describe=lambda c: "playbooks/host-setup.yml on every host"),
    Stage("install", _install, describe=lambda c: "this labctl, from a wheelhouse built here"),
    Stage("images", _images, describe=lambda c: "built here, shipped where missing"),
    Stage("measure", _measure, describe=lambda c: "each host's own class plan"),
    Stage("place", _place, describe=lambda c: "students by the hosts' room"),
    Stage("labs", _labs, describe=lambda c: f"class up on each host, {_at_once(c)}"),
    Stage("sheets", _sheets, describe=lambda c: "the access sheets, back here"),
)


def _at_once(c: _FleetUp) -> str:
    if c.max_parallel is None:
        return "one student's lab per core of the host at a time"
    return f"{c.max_parallel} at a time"


def up(
    roster: Roster,
    inventory: Inventory,
    name: str,
    lab: Lab,
    spec_path: Path,
    images: ImageStore,
    run: Runner,
    *,
    max_parallel: int | None = None,
    replace_failed: bool = False,
    window: exam.Window | None = None,
    max_students: int | None = None,
    lang: Lang | None = None,
    report: Reporter = quiet,
) -> FleetUpResult:
    """Bring the class up over the inventory's hosts (see the module).

    ``window``: the exam window's ends to set, on this controller and on every host (and
    ``lang``, the access sheets' language, likewise; None keeps the class's);
    ``max_parallel``: each host's students' labs at once (None: one per core of that host).
    """
    c = _FleetUp(
        roster,
        inventory,
        name,
        lab,
        spec_path,
        images,
        run,
        report,
        max_parallel,
        replace_failed,
        window,
        max_students,
        lang,
    )
    execute(FLEET_UP_STAGES, c, report)
    return FleetUpResult(
        c.name,
        c.lab.name,
        tuple(c.fleet.hosts[h] for h in inventory.names),
        tuple(c.cls.seats[s] for s in roster.ids),
        c.moved,
    )
