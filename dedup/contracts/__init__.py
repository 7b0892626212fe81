"""Contracts shared by every engine: reason codes and table schemas."""
