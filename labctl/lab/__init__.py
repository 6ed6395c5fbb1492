"""Running labs: naming, state, the up/down lifecycle."""
