"""Project exceptions. Each subclasses a builtin so callers can catch either."""


class W2SError(Exception):
    """Base of every error w2slab raises on purpose; the CLI prints its one-line message."""


class ConfigError(W2SError, ValueError):
    """A parameter has a value outside what is allowed."""


class UnknownNameError(W2SError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(W2SError, ValueError):
    """A dataset file is missing, malformed or unusable (e.g. one class only)."""


class ModelNotInstalledError(W2SError, RuntimeError):
    """A model's weights package is not installed; the message says the install command."""


class NotFittedError(W2SError, ValueError):
    """An estimator was used before `fit`."""
