"""Errors the core raises for bad input. Each message says what was wrong and what is accepted."""


class DiffSemError(Exception):
    """Base class: anything the CLI and services turn into a clear message, never a traceback."""


class ConfigError(DiffSemError, ValueError):
    """An invalid configuration value (odd k, t* outside [0, T), a non-finite SNR, ...)."""


class OutOfRangeError(ConfigError):
    """A well-formed setting outside its documented range (a probability of 2, a queue of a million frames)."""


class DataError(DiffSemError):
    """A data set file that is missing or corrupt."""


class CheckpointError(DiffSemError):
    """A checkpoint that is missing, unreadable, or does not match the requested configuration."""


class KeyedNoiseError(DiffSemError):
    """A missing, too short or wrong self-noise key (the message never contains the key)."""
