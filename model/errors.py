"""Errors shown to the user: each message says what went wrong and what to do."""


class RevisorError(Exception):
    """A user-facing failure; the CLI prints `revisor: <message>` and exits non-zero."""


class ModelNotFoundError(RevisorError):
    pass


class EngineUnavailableError(RevisorError):
    pass


class TransientError(RevisorError):
    """A failure that may pass by itself: the same work tried later can succeed."""


class ModelServerUnreachable(EngineUnavailableError, TransientError):
    """No model server answered: down, restarting or overloaded. The bot retries the job later."""


class DatasetError(RevisorError):
    pass


class DiffError(RevisorError):
    pass
