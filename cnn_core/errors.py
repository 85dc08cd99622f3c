"""Errors whose message a person can act on; the CLI and the pages show them without a traceback."""


class CnnError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class DataError(CnnError):
    """A data set is unknown, missing, corrupt or unusable for the request."""


class CheckpointError(CnnError):
    """A file is not a CNN Explorer checkpoint, or does not fit what was asked for."""


class ConfigError(CnnError):
    """A training or model option is out of range or does not fit the data."""


class ImageError(CnnError):
    """An uploaded or given image cannot be read or is too large."""
