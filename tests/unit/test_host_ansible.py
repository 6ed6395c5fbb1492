"""The ansible-runner glue: events to progress, stats to a result, failures to HostError."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.errors import HostError
from labctl.host.ansible import TaskEvent, failure_message, run_playbook

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
