"""Class mode: a roster in, one isolated lab instance per student, planned, probed, torn down."""
