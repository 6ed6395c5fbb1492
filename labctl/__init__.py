"""labctl: a lab controller for teaching the kinds of virtualization."""

__version__ = "0.1.0"
