"""Exercise texts are true on every host: with usable KVM and without it (TCG).

Every text of every shipped exercise is rendered for two lab states built by hand: one where
the "KVM" guests run under TCG, one where they run under KVM. No placeholder may stay
unrendered, and no sentence may claim an accelerator the state does not record.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labctl.exercises import runner, template
from labctl.exercises.model import Exercise, Text, load_exercises
from labctl.i18n import Lang
from labctl.instance.state import GuestRecord, InstanceDir, LabState
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab

LAB = LABS_DIR / "virtualization"
X86_VMS = ("kvm-full", "kvm-virtio")  # the guests whose accelerator depends on the host

# ---- a sentence's claim about this lab's accelerator ---------------------------------------

# "here", "this lab", "this host": the sentence speaks about the lab the student has.
LOCAL = re.compile(r"\b(aquí|here|este laboratorio|este anfitrión|this lab|this host)\b", re.I)
# tcg and kvm as words, not inside kvm-full, kvm_intel, -accel...
ACCEL = re.compile(r"(?<![\w-])(tcg|kvm)(?![\w-])", re.I)
# "sin KVM", "no hay KVM utilizable", "no usable KVM": saying the lab has no KVM.
NO_KVM = re.compile(r"\b(sin|without|no hay|no usable)\s+\**kvm\b", re.I)
# "con KVM sería más rápida", "with usable KVM it would say...": KVM as what is not here.
COUNTERFACTUAL = re.compile(r"\b(sería|serían|diría|dirían|would)\b", re.I)
SENTENCE_END = re.compile(r"(?<=[.;:!?])\s+|\n\s*\n")


def claimed_accel(sentence: str) -> set[str]:
    """The accelerators ``sentence`` says the lab's "KVM" guests run under (usually none)."""
    if "arm-emulated" in sentence:  # about the ARM guest: TCG on every x86 host, always true
        return set()
    said = set()
    local = bool(LOCAL.search(sentence))
    if local and NO_KVM.search(sentence):
        said.add("tcg")
        sentence = NO_KVM.sub(" ", sentence)
    named = {m.lower() for m in ACCEL.findall(sentence)}
    if local:
        said |= named
    elif COUNTERFACTUAL.search(sentence) and len(named) == 1:
        said |= {"kvm", "tcg"} - named
    return said


def false_claims(text: str, accel: str) -> list[str]:
    """The sentences of ``text`` claiming another accelerator than ``accel``."""
    return [s for s in SENTENCE_END.split(text) if claimed_accel(s) - {accel}]


@pytest.mark.parametrize(
    "sentence",
    [  # what the exercises said before they were made true on every host
        "Para pensar: `kvm-full` también corre aquí con TCG (no hay KVM utilizable), ¿qué",
        "To think about: `kvm-full` also runs under TCG here (no usable KVM); which factor",
        "Atención: aquí las dos máquinas corren con **TCG** (no hay KVM utilizable), y emular",
        "Mind: here both machines run under **TCG** (no usable KVM), and emulating the CPU",
        "¿Qué responde en `kvm-full`? En un anfitrión con KVM utilizable diría otra cosa",
        "What does it say in `kvm-full`? On a host with usable KVM it would say something else",
        "Aquí la máquina virtual arranca con TCG, sin KVM: con KVM sería más rápida, pero",
        "Here the virtual machine boots under TCG, without KVM: with KVM it would be faster,",
    ],
)
def test_the_detector_catches_sentences_that_assume_tcg(sentence: str) -> None:
    assert false_claims(sentence, "kvm"), sentence


@pytest.mark.parametrize(
    "sentence",
    [
        "En este laboratorio `kvm-full` corre con `kvm`: con `tcg`, QEMU traduce.",
        "Here you check it yourself.",
        "A type 1 hypervisor such as **KVM** runs the guest's instructions directly on the CPU.",
        "Con el otro (`kvm` si es `tcg`, `tcg` si es `kvm`) diría otra cosa.",
        "Aquí lo compruebas tú: `kvm_intel`, `kvm-full`, `-accel kvm`.",
    ],
)
def test_the_detector_leaves_sentences_true_on_a_kvm_host_alone(sentence: str) -> None:
    assert not false_claims(sentence, "kvm"), sentence


# ---- lab states built by hand --------------------------------------------------------------


def lab_state(accel: str) -> LabState:
    """The virtualization lab, up, with its x86 VMs under ``accel`` (the ARM one under TCG)."""
    spec = load_lab(LAB)
    guests = {}
    for i, (name, guest) in enumerate(spec.guests.items(), 10):
        is_vm = guest.engine == "libvirt"
        guests[name] = GuestRecord(
            name=name,
            engine=guest.engine,
            resource=f"{spec.name}-t-{name}",
            stage="ready",
            accel=(accel if name in X86_VMS else "tcg") if is_vm else None,
            address=f"192.0.2.{i}",
            port=8080 if guest.engine == "docker" else 22,
            ready_seconds=40.0 if is_vm else 1.5,
        )
    assert set(X86_VMS) <= set(guests)
    return LabState(spec.name, "t", str(LAB / "lab.yaml"), guests=guests)


def workspace(accel: str, tmp_path: Path) -> runner.Workspace:
    inst = InstanceDir("virtualization", "t", root=tmp_path)
    return runner.Workspace("virtualization", "t", LAB / "exercises", inst, lab_state(accel))


def texts(exercise: Exercise) -> list[Text]:
    """Every text a student reads: instructions, titles, hints, what checks look at, notes."""
    found = [exercise.title, exercise.instructions]
    for step in exercise.steps:
        found += [step.title, step.instructions, *step.hints]
        for check in step.checks:
            found += [check.what] + ([check.note] if check.note else [])
    return found


EXERCISES = load_exercises(LAB / "exercises")


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_every_text_renders_and_claims_only_the_recorded_accelerator(
    exercise: Exercise, accel: str, tmp_path: Path
) -> None:
    values = runner.values(workspace(accel, tmp_path), exercise, "ana")
    assert values.get("guest.kvm-full.accel") == accel
    langs: tuple[Lang, ...] = ("es", "en")
    for text in texts(exercise):
        for lang in langs:
            rendered = template.render(text.get(lang), values)  # strict: a missing value raises
            assert not re.search(r"\{(param|guest)\.", rendered), rendered
            assert not false_claims(rendered, accel), (exercise.id, lang, rendered)


def test_the_accelerator_is_named_from_the_state(tmp_path: Path) -> None:
    exercise = next(e for e in EXERCISES if e.id == "pv-disco")
    for accel in ("tcg", "kvm"):
        values = runner.values(workspace(accel, tmp_path), exercise, "ana")
        rendered = template.render(exercise.instructions.get("en"), values)
        assert f"`kvm-full` runs under `{accel}`" in rendered


def test_a_container_has_no_accelerator_to_name(tmp_path: Path) -> None:
    exercise = next(e for e in EXERCISES if e.id == "lxc-nucleo")
    values = runner.values(workspace("kvm", tmp_path), exercise, "ana")
    assert "guest.lxc-system.accel" not in values
    with pytest.raises(template.TemplateError):
        template.render("{guest.lxc-system.accel}", values)
