"""Find the files to index under a set of roots, honouring .gitignore files and include/exclude globs.

Walking is a separate concern from loading: this module only looks at names and ``stat`` results; it
never opens a document. What it leaves out on purpose (version-control folders, virtualenvs, hidden
and gitignored files) is dropped silently, because those were never the user's documents. What it
could not look at (broken symlinks, unreadable folders) comes back as :class:`~semsearch.types.Skipped`
so the caller can report it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from semsearch.types import Skipped

if TYPE_CHECKING:  # pathspec is imported where rules are read: a search that only names paths never needs it
    import pathspec

#: Folder names that never hold the user's documents; pruned without looking inside.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".semsearch",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
    }
)

# A byte that is not UTF-8, as path_text escapes it (only bytes from 0x80 up can be).
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")

# (folder the patterns are relative to, compiled patterns); deeper entries come later in a stack.
_Rules = tuple[tuple[str, "pathspec.GitIgnoreSpec"], ...]


@dataclass(frozen=True)
class FileEntry:
    """A file to index: its absolute, resolved path and the ``stat`` values that tell if it changed.

    ``path`` opens the file; :attr:`path_text` is the same path as the index stores and shows it.
    """

    path: Path
    size: int
    mtime_ns: int

    @property
    def path_text(self) -> str:
        """The path as valid text (see :func:`path_text`)."""
        return path_text(self.path)


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as text that SQLite, JSON, a tokenizer and a terminal all accept.

    A file name that is not valid UTF-8 reaches Python with each stray byte as a lone surrogate
    (``"notes\\udcff.txt"``), which all of those refuse. The bytes become ``\\xff`` escapes, as
    ``ls -b`` shows them; any other path comes back unchanged. :func:`is_gone` maps an escaped
    path back to the file.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name gives: it came from a caller's string
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def walk(
    roots: Sequence[Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip: Sequence[Path] = (),
) -> Iterator[FileEntry | Skipped]:
    """Yield every file to index under ``roots``, in sorted order and each file once.

    A root that is a folder is walked recursively; a root that is a file is yielded as it is, even if it
    is hidden, gitignored or outside ``include``/``exclude``, because the user named it. ``include`` and ``exclude`` are gitignore-style
    patterns matched against the path relative to the root a file was found under (``*.md`` matches at
    any depth, ``docs/**`` only at the top); when ``include`` is given only matching files are kept.
    ``skip`` lists paths (such as the index folder) left out together with everything below them.
    Missing roots, broken symlinks and unreadable folders come back as ``Skipped``.
    """
    walker = _Walker(include=include, exclude=exclude, skip=skip)
    for item in walker.walk(roots):
        # What is reported is printed and stored, so it must be valid text (see path_text).
        yield item if isinstance(item, FileEntry) else Skipped(path_text(item.path), item.reason)


class _Walker:
    """The state of one :func:`walk` call: compiled filters and the files already yielded."""

    def __init__(self, *, include: Sequence[str], exclude: Sequence[str], skip: Sequence[Path]):
        self.include = _spec(include) if include else None
        self.exclude = _spec(exclude) if exclude else None
        self.skip = frozenset(os.path.realpath(os.path.abspath(os.path.expanduser(p))) for p in skip)
        self.seen: set[str] = set()

    def walk(self, roots: Sequence[Path]) -> Iterator[FileEntry | Skipped]:
        located: list[tuple[str, str]] = []  # (resolved path, path as given)
        for root in roots:
            given = os.path.abspath(os.path.expanduser(root))
            if not os.path.lexists(given):
                yield Skipped(str(root), "not found")
                continue
            located.append((os.path.realpath(given), given))
        for resolved, given in sorted(set(located)):
            if self._is_skipped(resolved):
                continue
            try:
                info = os.stat(resolved)
            except OSError as error:
                yield Skipped(given, _stat_failure(given, error))
                continue
            if stat.S_ISDIR(info.st_mode):
                yield from self._walk_folder(resolved)
            elif stat.S_ISREG(info.st_mode):
                if resolved not in self.seen:
                    self.seen.add(resolved)
                    yield FileEntry(Path(resolved), info.st_size, info.st_mtime_ns)
            else:
                yield Skipped(given, "not a regular file")

    def _is_skipped(self, path: str) -> bool:
        return any(path == s or path.startswith(s + os.sep) for s in self.skip)

    def _walk_folder(self, root: str) -> Iterator[FileEntry | Skipped]:
        """Depth-first walk with names sorted at every level; ignored folders are never entered."""
        prefix_len = len(root) + 1
        listing = _list_folder(root, _enclosing_repository_rules(root), is_root=True)
        if isinstance(listing, Skipped):
            yield listing
            return
        if listing is None:
            return
        stack = [listing]
        while stack:
            entries, rules = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            name = entry.name
            path = entry.path
            if name.startswith(".") or path in self.skip:
                continue
            relative = path[prefix_len:].replace(os.sep, "/")
            if entry.is_dir(follow_symlinks=False):
                if name in SKIPPED_FOLDERS or self._is_excluded(path, relative, rules, folder=True):
                    continue
                listing = _list_folder(path, rules, is_root=False)
                if isinstance(listing, Skipped):
                    yield listing
                elif listing is not None:
                    stack.append(listing)
                continue
            if self._is_excluded(path, relative, rules, folder=False):
                continue
            if self.include is not None and not self.include.match_file(relative):
                continue
            found = self._file(entry)
            if found is not None:
                yield found

    def _is_excluded(self, path: str, relative: str, rules: _Rules, *, folder: bool) -> bool:
        if _is_ignored(path, rules, folder=folder):
            return True
        if self.exclude is None:
            return False
        return self.exclude.match_file(relative + "/" if folder else relative)

    def _file(self, entry: os.DirEntry[str]) -> FileEntry | Skipped | None:
        """The entry for one directory entry that passed the filters (``None`` if already yielded).

        A link's file is indexed under its target's path (so it is indexed once), but a skipped
        link is reported under its own path, where the user will look for it.
        """
        path = entry.path
        if entry.is_symlink():
            try:
                info = os.stat(path)
            except OSError as error:
                return Skipped(path, _stat_failure(path, error))
            if stat.S_ISDIR(info.st_mode):
                # Following folder links can loop forever or leave the tree the user chose.
                return Skipped(path, "symlinked folder (not followed)")
            path = os.path.realpath(path)
            if self._is_skipped(path):
                return None
        else:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as error:
                return Skipped(path, _stat_failure(path, error))
        if not stat.S_ISREG(info.st_mode):
            return Skipped(entry.path, "not a regular file")
        if path in self.seen:
            return None
        self.seen.add(path)
        return FileEntry(Path(path), info.st_size, info.st_mtime_ns)


def _list_folder(
    folder: str, rules: _Rules, *, is_root: bool
) -> tuple[Iterator[os.DirEntry[str]], _Rules] | Skipped | None:
    """The sorted entries of ``folder`` and the ignore rules that apply inside it.

    ``None`` means the folder is a virtualenv and is left out; a root is walked even if it is one.
    """
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except PermissionError:
        return Skipped(folder, "unreadable folder")
    except OSError as error:
        return Skipped(folder, f"unreadable folder ({error.strerror or type(error).__name__})")
    names = {e.name for e in entries}
    if not is_root and "pyvenv.cfg" in names:
        return None
    if ".gitignore" in names:
        spec = _read_rules(os.path.join(folder, ".gitignore"))
        if spec is not None:
            rules = (*rules, (folder, spec))
    return iter(entries), rules


def _is_ignored(path: str, rules: _Rules, *, folder: bool) -> bool:
    """Whether git would ignore ``path``: the deepest rule file with a matching pattern decides."""
    for base, spec in reversed(rules):
        relative = path[len(base) + 1 :].replace(os.sep, "/")
        if folder:
            relative += "/"
        decision = spec.check_file(relative).include
        if decision is not None:
            return decision
    return False


def _read_rules(path: str) -> pathspec.GitIgnoreSpec | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None  # an unreadable rule file ignores nothing, as with git
    spec = _spec(lines)
    return spec if len(spec) else None


def _spec(lines: Sequence[str]) -> pathspec.GitIgnoreSpec:
    import pathspec  # (see the import at the top)

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _enclosing_repository_rules(root: str) -> _Rules:
    """Rules from the git work tree above ``root``: ``.git/info/exclude`` and ancestor ``.gitignore`` files.

    These make walking a subfolder of a repository give the same files as walking the repository.
    If those rules ignore ``root`` itself, the user named an ignored folder on purpose, so only the
    rules inside it apply.
    """
    top = root
    while not os.path.lexists(os.path.join(top, ".git")):
        parent = os.path.dirname(top)
        if parent == top:
            return ()
        top = parent
    rules: list[tuple[str, pathspec.GitIgnoreSpec]] = []
    info_exclude = _read_rules(os.path.join(top, ".git", "info", "exclude"))
    if info_exclude is not None:
        rules.append((top, info_exclude))
    ancestors = []
    folder = root
    while folder != top:
        folder = os.path.dirname(folder)
        ancestors.append(folder)
    for folder in reversed(ancestors):
        spec = _read_rules(os.path.join(folder, ".gitignore"))
        if spec is not None:
            rules.append((folder, spec))
    if root != top and _is_ignored(root, tuple(rules), folder=True):
        return ()
    return tuple(rules)


def is_gone(path: str) -> bool:
    """Whether the file at ``path`` (as :func:`path_text` gives it) no longer exists.

    Only "not found" counts: a file left out of this walk (by ``include``/``exclude``, a new
    ``.gitignore`` rule, an unreadable folder) or one that cannot be looked at right now
    (permission denied, an I/O error) may well still be there.
    """
    candidates = [path]
    if _ESCAPED_BYTE.search(path):
        # Made by path_text from a name that is not UTF-8, or a name that spells "\\xff" out: try both.
        candidates.append(_ESCAPED_BYTE.sub(lambda match: chr(0xDC00 + int(match.group(1), 16)), path))
    for candidate in candidates:
        try:
            os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return False
        return False
    return True


def _stat_failure(path: str, error: OSError) -> str:
    # ELOOP: a chain of links that points back at itself.
    if os.path.islink(path) and error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
        return "broken symlink"
    if isinstance(error, PermissionError):
        return "permission denied"
    return f"cannot read file information ({error.strerror or type(error).__name__})"
