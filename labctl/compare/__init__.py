"""``labctl compare``: the lab's techniques measured side by side, with the host as reference.

``workloads`` holds the fixed commands and the parsers of their output, ``measure`` runs them
through the lab's exec path and on the host, ``boot`` times fresh starts, ``claims`` turns the
figures into verdicts on the lesson's claims, ``report_html`` draws them.
"""
