"""Local launcher: every service of the live stack as a process on loopback (``python -m launcher``)."""
