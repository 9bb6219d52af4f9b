"""Errors that reach users as one clear line (the CLI prints them without a traceback).

Raise a subclass of ``FmtlbenchError`` whenever the cause is the user's input or data: a
mistyped name, an invalid parameter, a missing or corrupt file. The message must name the
field or file and say how to fix it.
"""


class FmtlbenchError(Exception):
    """Base of all user-facing errors."""


class ConfigError(FmtlbenchError):
    """A configuration value is missing, malformed or out of range."""


class WeightsMissingError(ConfigError):
    """Pretrained weights a run starts from are not on this machine (the message says how to
    get them). Its own class so a dry run can report it as a precondition of the run instead
    of calling the cell invalid."""


class UnknownComponentError(ConfigError):
    """A component name is not registered by any installed plugin."""


class RegistryError(FmtlbenchError):
    """Two plugins registered the same name, or a hook returned something unusable."""


class DataError(FmtlbenchError):
    """A data file is missing, unreadable or inconsistent; the message names the file."""


class IncompatibleError(FmtlbenchError):
    """The chosen algorithm cannot run on the chosen clients/models; the message says why."""


class CheckpointError(FmtlbenchError):
    """A checkpoint cannot be written (full disk) or is not one this project can load."""


class TrackingError(FmtlbenchError):
    """The tracking store cannot be reached or refuses a write; the message names its URI."""


class TrackingLost(TrackingError):
    """The tracking server was lost during a run, which stopped at a round boundary with its
    checkpoint; the message says where the unsent records are kept and how to resume."""
