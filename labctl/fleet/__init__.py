"""A class over several lab hosts: an Ansible inventory in, each student's lab on a host.

``inventory`` (the hosts, checked), ``place`` (who goes where, by measured room), ``ship``
(labctl and the images, built once here), ``state`` (``fleet.json``), ``lifecycle`` (up,
status, down as stage lists driving ``playbooks/`` through ansible-runner). Above
``classroom``: each host runs the one-server class mode for its part of the roster.
"""
