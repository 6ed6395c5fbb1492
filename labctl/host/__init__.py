"""The host: what it can run (probes, doctor rules, accelerator) and how to prepare it."""
