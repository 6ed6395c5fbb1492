"""A lab instance's records and the host's facts about it, below the backends.

What one instance is and owns: its state file (:mod:`.state`), the names of everything it
creates (:mod:`.naming`), the subnets and ports it holds host-wide (:mod:`.subnets`,
:mod:`.reservations`), the rule that keeps it apart from other instances
(:mod:`.isolation`) and the guard that keeps labctl's packets on its bridges
(:mod:`.netguard`). Backends use these; nothing here knows an engine.
"""
