"""Errors of the data layer: each message says what is missing and the two ways to get it."""


class DataError(RuntimeError):
    """Data that cannot be used: missing, corrupt or not downloadable."""


class MissingDataError(DataError, FileNotFoundError):
    """A file the study needs is not in the data directory."""


class CorruptDataError(DataError):
    """A file is present but its checksum or contents are wrong."""
