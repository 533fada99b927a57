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


class Interrupted(BaseException):
    """SIGTERM or SIGINT, raised in the main thread so `finally` blocks close the engines. Not a
    KeyboardInterrupt: vLLM swallows those while its engine starts, and then waits for ever on an
    engine whose handshake socket it has closed."""
