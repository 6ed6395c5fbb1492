"""The ansible-runner glue: events to progress, stats to a result, failures to HostError."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from labctl.errors import HostError
from labctl.host.ansible import TaskEvent, failure_message, fan_out, run_playbook

PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: say hello
      ansible.builtin.debug:
        msg: hello
    - name: touch a file
      ansible.builtin.file:
        path: "{{ target }}"
        state: touch
        modification_time: preserve
        access_time: preserve
    - name: maybe fail
      ansible.builtin.fail:
        msg: "the {{ what }} is broken"
      when: what != 'nothing'
"""


@pytest.fixture()
def playbook(tmp_path: Path) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(PLAY)
    return path


def test_changes_then_nothing_changed(playbook: Path, tmp_path: Path) -> None:
    events: list[TaskEvent] = []
    extra = {"target": str(tmp_path / "f"), "what": "nothing"}
    first = run_playbook(playbook, extra, on_task=events.append, log_path=tmp_path / "log")
    assert first.ok and first.changed == 1 and first.changed_tasks == ("touch a file",)
    assert ("say hello", "start") in {(e.task, e.status) for e in events}
    assert ("touch a file", "changed") in {(e.task, e.status) for e in events}
    assert "say hello" in (tmp_path / "log").read_text()
    second = run_playbook(playbook, extra)
    assert second.nothing_changed and second.skipped == 1


def test_failure_names_the_task_and_its_message(playbook: Path, tmp_path: Path) -> None:
    with pytest.raises(HostError) as exc:
        run_playbook(playbook, {"target": str(tmp_path / "f"), "what": "widget"})
    assert exc.value.message == "play.yml failed at task 'maybe fail': the widget is broken"
    result = run_playbook(
        playbook, {"target": str(tmp_path / "f"), "what": "widget"}, raise_on_failure=False
    )
    assert not result.ok and result.failed_tasks[0].task == "maybe fail"


def test_missing_playbook(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="not found"):
        run_playbook(tmp_path / "absent.yml")


def test_message_keeps_command_output_and_loop_items() -> None:
    assert failure_message({"msg": "non-zero return code", "stderr": "boom\nreal cause"}) == (
        "non-zero return code: boom | real cause"
    )
    looped = {"results": [{"failed": False}, {"failed": True, "msg": "item 2 broke"}]}
    assert failure_message(looped) == "item 2 broke"


# -- fan_out: one module over several hosts, an outcome per host ------------------------------


@pytest.fixture()
def three_local_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three inventory hosts that are all this machine (Ansible's local connection), Ansible's
    temporary files under ``tmp_path`` (a run cut short leaves its own behind)."""
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "local"))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "".join(
            f"{name} ansible_connection=local ansible_python_interpreter={sys.executable}"
            f" ansible_remote_tmp={tmp_path / 'remote'}\n"
            for name in ("quick", "broken", "slow")
        )
    )
    return inventory


#: what each host does: says its name, fails, or hangs far beyond the fan-out's time
BY_HOST = (
    "case {{ inventory_hostname }} in broken) echo out; echo why >&2; exit 3;; "
    "slow) sleep 120;; esac; echo {{ inventory_hostname }}"
)


def test_fan_out_gives_each_host_its_outcome(three_local_hosts: Path) -> None:
    done = fan_out(three_local_hosts, ["quick", "broken"], module="shell", args=BY_HOST)
    assert done.hosts["quick"].ok and done.hosts["quick"].stdout == "quick"
    broken = done.hosts["broken"]
    assert not broken.ok and not broken.unreachable and broken.stdout == "out"
    assert list(done.failed) == ["broken"] and "why" in broken.failure


def test_a_host_over_the_time_allowed_is_said_so_and_the_others_keep_their_answer(
    three_local_hosts: Path,
) -> None:
    started = time.monotonic()
    done = fan_out(three_local_hosts, ["quick", "slow"], module="shell", args=BY_HOST, timeout=10)
    assert time.monotonic() - started < 60  # not the slow host's 120 s
    assert done.hosts["quick"].ok and done.hosts["quick"].stdout == "quick"
    assert not done.hosts["slow"].ok
    assert done.hosts["slow"].failure == "not done within 10 s"


def test_a_playbook_cut_short_leaves_no_host_done(three_local_hosts: Path, tmp_path: Path) -> None:
    # every host passes the first task, then the run is out of time in the second: none is done
    play = tmp_path / "two.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.command: 'true'\n"
        "    - ansible.builtin.command: sleep 120\n"
    )
    done = fan_out(three_local_hosts, ["quick", "slow"], playbook=play, timeout=10)
    assert {h: o.failure for h, o in done.hosts.items()} == {
        "quick": "not done within 10 s",
        "slow": "not done within 10 s",
    }
