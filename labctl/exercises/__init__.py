"""Guided exercises: what a student is asked to do in the lab, and how the lab checks it.

``model`` (the YAML files), ``params`` (per-student values), ``template`` (``{param.user}``),
``checks`` and ``answers`` (check kinds built on one ``run``, results in ``outcome``),
``runner`` (checks against the real lab) and ``progress`` (what each student has done).
"""
