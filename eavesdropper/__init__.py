"""Eavesdropper service: listens on its own link and runs an attack chosen by name."""
