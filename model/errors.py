"""Errors shown to the user: each message says what went wrong and what to do."""


class RevisorError(Exception):
    """A user-facing failure; the CLI prints `revisor: <message>` and exits non-zero."""


class ModelNotFoundError(RevisorError):
    pass


class EngineUnavailableError(RevisorError):
    pass


class DatasetError(RevisorError):
    pass


class DiffError(RevisorError):
    pass
