"""The Vagrantfile validates with the real Vagrant and its libvirt provider.

Only `vagrant validate`: booting the lab host VM takes from ten minutes to over an hour and is
the manual `bench/vagrant_up.sh`. Vagrant comes from `labctl host setup --test-tools`
(`./bootstrap test`); under CI a missing Vagrant or plugin fails, elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.host.setup import SETUP_PLAYBOOK

ROOT = Path(__file__).resolve().parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"


@pytest.fixture(scope="module")
def vagrant(in_ci: bool) -> str:
    """Path of `vagrant`, with the vagrant-libvirt plugin installed."""
    path = shutil.which("vagrant")
    if path is None:
        if in_ci:
            pytest.fail("vagrant is not installed: ./bootstrap test runs host setup --test-tools")
        pytest.skip("vagrant is not installed (labctl host setup --test-tools installs it)")
    plugins = subprocess.run(
        [path, "plugin", "list"], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    if "vagrant-libvirt" not in plugins:
        if in_ci:
            pytest.fail(f"the vagrant-libvirt plugin is missing: {plugins.strip()}")
        pytest.skip("the vagrant-libvirt plugin is missing (apt-get install vagrant-libvirt)")
    return path


def validate(
    vagrant: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`vagrant validate` of the repository's Vagrantfile; Vagrant's state goes to tmp_path."""
    full_env = {
        **os.environ,
        "VAGRANT_CWD": str(ROOT),
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        **env,
    }
    for name in (
        "LABCTL_BOX",
        "LABCTL_VM_MEMORY",
        "LABCTL_VM_CPUS",
        "LABCTL_VAGRANT_DRIVER",
        "LABCTL_READY_TIMEOUT",
    ):
        if name not in env:
            full_env.pop(name, None)
    return subprocess.run(
        [vagrant, "validate", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("driver", ["kvm", "qemu"])
def test_vagrantfile_validates_for_libvirt(vagrant: str, tmp_path: Path, driver: str) -> None:
    # both branches of the provider block: nested KVM and plain TCG
    result = validate(vagrant, tmp_path, LABCTL_VAGRANT_DRIVER=driver)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_vagrantfile_validates_with_host_detection_and_overrides(
    vagrant: str, tmp_path: Path
) -> None:
    # no driver given: the Vagrantfile decides from this host's CPU and modules
    assert validate(vagrant, tmp_path).returncode == 0
    custom = validate(
        vagrant,
        tmp_path,
        LABCTL_BOX="labctl/debian12",
        LABCTL_VM_MEMORY="8192",
        LABCTL_VM_CPUS="4",
        LABCTL_READY_TIMEOUT="2400",
    )
    assert custom.returncode == 0, custom.stdout + custom.stderr


def test_provider_independent_part_validates(vagrant: str, tmp_path: Path) -> None:
    # what a VirtualBox user gets checked here, where VirtualBox itself is not installed
    result = validate(vagrant, tmp_path, "--ignore-provider")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LABCTL_VAGRANT_DRIVER": "xen"}, "LABCTL_VAGRANT_DRIVER must be kvm or qemu"),
        ({"LABCTL_VM_MEMORY": "lots"}, "invalid value for Integer"),
        ({"LABCTL_READY_TIMEOUT": "soon"}, "LABCTL_READY_TIMEOUT must be a number of seconds"),
    ],
)
def test_bad_settings_are_refused(
    vagrant: str, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = validate(vagrant, tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_vagrant_provisions_with_the_host_setup_playbook() -> None:
    # one set-up logic: the ansible_local provisioner runs the file `labctl host setup` runs
    text = VAGRANTFILE.read_text()
    playbook = SETUP_PLAYBOOK.relative_to(ROOT).as_posix()
    assert f'ansible.playbook = "{playbook}"' in text
    assert '"cd /vagrant && ./bootstrap up"' in text
    # ...with the VM profile written where every later labctl command in the VM reads it
    assert "echo #{VM_PROFILE} > /etc/labctl/vm-profile" in text
    # ...and `labctl up` inside gets the (longer) ready timeout through its environment
    assert '{ "LABCTL_READY_TIMEOUT" => READY_TIMEOUT }' in text
