"""Errors raised by semsearch. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class SemsearchError(Exception):
    """Base class for every error semsearch raises on purpose."""


class IndexNotFoundError(SemsearchError):
    """There is no semsearch index at the given location."""


class IndexLockedError(SemsearchError):
    """Another process is writing to this index."""


class IndexDamagedError(SemsearchError):
    """The index database is damaged, or the file is not a database at all."""


class StorageError(SemsearchError):
    """The index database cannot be opened, read or written: no permission, a full disk, an I/O error."""


class SchemaTooNewError(SemsearchError):
    """The index was written by a newer semsearch than this one."""


class ModelMismatchError(SemsearchError):
    """The index was built with a different embedding model."""


class ModelLoadError(SemsearchError):
    """The embedding model could not be loaded."""


class EmptyQueryError(SemsearchError):
    """The query has no text to search for."""


class EmptyIndexError(SemsearchError):
    """The index holds no documents yet."""


class DocumentNotFoundError(SemsearchError):
    """No document in the index has that id or path."""


class LoaderError(SemsearchError):
    """A file could not be read as a document; the message is the reason it was skipped."""


class ReaderError(SemsearchError):
    """The worker process that parses files could not be started, or keeps dying between files."""


class DatasetError(SemsearchError):
    """An evaluation dataset is missing files or is malformed."""
