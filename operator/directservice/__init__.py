"""directservice-operator: cluster DNS for managed inference instances."""

__version__ = "0.1.0"
