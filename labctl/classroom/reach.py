"""What a student's account may reach: their own lab's guests, and nothing of anyone else's.

``class up`` calls :func:`admit` twice per student: once their account exists (the lab may
not: the account then reaches no lab at all) and again once their lab is up. It

- records the instance's :class:`~labctl.instance.state.Owner` (class, student, the
  student's public key, their seat slot from the class state, whence their exercises'
  ports): every guest is labelled with the class and student, and the guests
  students log in to (``SSH_ENGINES``) get the student's key beside the lab's, at creation,
  so a guest made anew by a reset has it too;
- puts the account's uid in labctl's firewall (``isolation.admit``): from the server's shell,
  and through SSH's ``ProxyJump``, which connects as that uid, only the student's own bridges
  and published ports answer (``lab.lifecycle`` admits the owner's uid again whenever it makes
  the instance's networks, so a ``down`` and ``up`` or a reset keeps it so);
- rewrites the student's access sheet with one ``ssh_config`` host per guest.
"""

from __future__ import annotations

from labctl.classroom import accounts
from labctl.classroom.sheet import Forward, Hop
from labctl.classroom.state import ClassDir
from labctl.errors import LabctlError
from labctl.instance import isolation
from labctl.instance.state import InstanceDir, LabState, Owner
from labctl.lab.inventory import SSH_ENGINES


def routes(state: LabState | None) -> tuple[tuple[Hop, ...], tuple[Forward, ...]]:
    """The guests a student logs in to (by address) and the ports their lab publishes."""
    if state is None:
        return (), ()
    hops = tuple(
        Hop(r.name, r.address)
        for r in state.guests.values()
        if r.engine in SSH_ENGINES and r.address is not None
    )
    forwards = tuple(
        Forward(r.name, r.host_port) for r in state.guests.values() if r.host_port is not None
    )
    return hops, forwards


def admit(user: str, class_name: str, nft: isolation.NftRunner | None = None) -> None:
    """Let ``user`` (a student account of ``class_name``) reach their own instance only."""
    account = accounts.record(user)
    if account is None or account.class_name != class_name or account.uid is None:
        raise LabctlError(
            f"no account {user} of class {class_name} on this host",
            f"run `labctl class up` again for class {class_name}",
        )
    inst = InstanceDir(account.lab, account.instance)
    cls = ClassDir(class_name).load()
    seat = cls.seats.get(account.student) if cls is not None else None
    slot = seat.slot if seat is not None else None
    inst.save_owner(Owner(class_name, account.student, account.public_key, account.uid, slot))
    isolation.admit(account.lab, account.instance, account.uid, nft)
    hops, forwards = routes(inst.load())
    accounts.write_sheet(account, hops=hops, forwards=forwards)
