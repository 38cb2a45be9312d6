"""The toolkit's exceptions: one base class, with standard-library parents.

Every message says what was expected, what was found and how to fix it. The CLI
prints ``str(error)`` on one line, less its hints for Python callers (the
"(overwrite=True in Python)" of "--overwrite (overwrite=True in Python)", see
:func:`probe.cli.cli_message`), and exits with code 2; Python callers can catch
either :class:`ProbeError` or the usual ``ValueError`` / ``FileNotFoundError``.
"""

from __future__ import annotations


class ProbeError(Exception):
    """Base class of every error the toolkit raises on bad input."""


class StoreError(ProbeError, ValueError):
    """A latent store is missing, corrupt, of another format version or inconsistent."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A latent store path does not exist."""


class OutputExistsError(ProbeError, FileExistsError):
    """An output path exists and overwriting was not asked for, or what is there is not the toolkit's to replace."""


class OutputPathError(ProbeError, OSError):
    """An output path cannot be written: the working directory, a file where a directory goes (or the
    other way round), a file in the middle of the path, or a directory that is not writable."""


class OutputLockedError(ProbeError, RuntimeError):
    """Another run is writing the same output right now."""


class DiskFullError(ProbeError, OSError):
    """The file system ran out of space (or a file-size limit was reached) while writing an output."""


class LatentsError(ProbeError, ValueError):
    """A latent matrix or its metadata is malformed (shape, dtype, NaN, columns)."""


class ImportSourceError(ProbeError, ValueError):
    """A file given to ``probe import`` cannot be turned into a store."""


class LayerNotFoundError(ProbeError, KeyError):
    """A layer name is not in a model or a store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ProbeError, ValueError):
    """A checkpoint is missing, corrupt, unsafe to load or does not fit the model."""


class ModelCallError(CheckpointError):
    """The model's own forward (or an ``--embed`` function) raised on the inputs the adapter made: the model does
    not take them. The message quotes the model's error; ``__cause__`` is that error, with its traceback."""


class DataError(ProbeError, ValueError):
    """A dataset is missing, of an unknown format, or has bad episodes or stages."""


class ConfigError(ProbeError, ValueError):
    """An option or configuration value is invalid."""


class MetricError(ProbeError, ValueError):
    """Metrics cannot be computed on the given latents (too few samples, one embodiment ...)."""


class IndexMismatchError(ProbeError, ValueError):
    """A retrieval index does not belong to the store or layer it is used with."""


class IndexFileError(ProbeError, ValueError):
    """A retrieval index directory is missing, corrupt or of another format version."""


class MissingDependencyError(ProbeError, ImportError):
    """An optional dependency a checkpoint or format needs is not installed (the message names the extra)."""


# ``log.warning(..., extra=IN_MANIFEST)``: a warning that is also kept in the store's manifest (its
# ``warnings``), which ``probe extract`` prints once after extracting; its console drops these log records.
IN_MANIFEST = {"in_manifest": True}
