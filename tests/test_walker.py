"""Walking: which files are found, which are left out silently, and which are reported."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from semsearch.types import Skipped
from semsearch.walker import FileEntry, is_gone, path_text, walk

SHARED = Path("/work/shared/data/folders")


def make(root: Path, *paths: str, content: str = "x") -> None:
    for relative in paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def found(root: Path, *roots: Path, **options) -> list[str]:
    """Relative paths of the files found (in walk order); fails on anything skipped."""
    results = list(walk(list(roots) or [root], **options))
    assert not [r for r in results if isinstance(r, Skipped)]
    return [r.path.relative_to(root.resolve()).as_posix() for r in results]


def skipped(results) -> list[Skipped]:
    return [r for r in results if isinstance(r, Skipped)]


def test_walks_recursively_in_sorted_order(tmp_path):
    make(tmp_path, "b.txt", "a/z.md", "a/b/c.txt", "C.txt", "a/a.txt")
    assert found(tmp_path) == ["C.txt", "a/a.txt", "a/b/c.txt", "a/z.md", "b.txt"]
    assert found(tmp_path) == found(tmp_path)


def test_entries_carry_resolved_path_size_and_mtime(tmp_path):
    make(tmp_path, "notes.txt", content="hello")
    [entry] = list(walk([tmp_path / "." / "notes.txt"]))
    assert isinstance(entry, FileEntry)
    assert entry.path == (tmp_path / "notes.txt").resolve() and entry.path.is_absolute()
    info = os.stat(tmp_path / "notes.txt")
    assert (entry.size, entry.mtime_ns) == (5, info.st_mtime_ns)


def test_leaves_out_hidden_tool_and_dependency_folders(tmp_path):
    make(
        tmp_path,
        "keep.md",
        ".hidden.md",
        ".secret/a.md",
        ".git/config",
        "node_modules/pkg/readme.md",
        "src/__pycache__/m.pyc",
        ".tox/log.txt",
        "venv/pyvenv.cfg",
        "venv/lib/site.py",
        "env2/pyvenv.cfg",
        "env2/lib/other.py",
        "venv-notes/pyvenv.txt",
        "src/main.py",
    )
    assert found(tmp_path) == ["keep.md", "src/main.py", "venv-notes/pyvenv.txt"]


def test_honours_nested_gitignore_files_with_negation(tmp_path):
    make(
        tmp_path,
        "a.log",
        "keep.txt",
        "build/out.txt",
        "docs/guide.md",
        "docs/draft.md",
        "docs/important.log",
        "docs/sub/x.md",
        "docs/sub/x.tmp",
        "other/draft.md",
        "other/sub/x.tmp",
    )
    (tmp_path / ".gitignore").write_text("# comment\n*.log\nbuild/\n*.tmp\n")
    (tmp_path / "docs" / ".gitignore").write_text("draft.md\n!important.log\n")
    (tmp_path / "docs" / "sub" / ".gitignore").write_text("!*.tmp\n")
    assert found(tmp_path) == [
        "docs/guide.md",
        "docs/important.log",
        "docs/sub/x.md",
        "docs/sub/x.tmp",
        "keep.txt",
        "other/draft.md",
    ]


def test_ignored_folders_are_not_entered(tmp_path, monkeypatch):
    make(tmp_path, "keep.md", "generated/deep/a.md", "generated/deep/b.md")
    (tmp_path / ".gitignore").write_text("generated/\n")
    entered: list[str] = []
    real_scandir = os.scandir

    def spying_scandir(path):
        entered.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spying_scandir)
    assert found(tmp_path) == ["keep.md"]
    assert not [p for p in entered if "generated" in p]


def test_rules_of_the_enclosing_repository_apply_to_a_subfolder(tmp_path):
    make(tmp_path, "repo/notes/a.md", "repo/notes/b.bak", "repo/notes/c.secret", "repo/.git/HEAD")
    (tmp_path / "repo" / ".gitignore").write_text("*.bak\n")
    (tmp_path / "repo" / ".git" / "info").mkdir()
    (tmp_path / "repo" / ".git" / "info" / "exclude").write_text("*.secret\n")
    assert found(tmp_path, tmp_path / "repo" / "notes") == ["repo/notes/a.md"]
    assert found(tmp_path, tmp_path / "repo") == ["repo/notes/a.md"]


def test_a_folder_the_user_names_is_walked_even_if_ignored(tmp_path):
    make(tmp_path, "repo/.git/HEAD", "repo/build/report.md")
    (tmp_path / "repo" / ".gitignore").write_text("build/\n")
    assert found(tmp_path, tmp_path / "repo") == []
    assert found(tmp_path, tmp_path / "repo" / "build") == ["repo/build/report.md"]


def test_skip_leaves_out_a_folder_and_everything_below(tmp_path):
    make(tmp_path, "doc.md", "index/data.db", "index/sub/more.md", "indexed.md")
    assert found(tmp_path, skip=[tmp_path / "index"]) == ["doc.md", "indexed.md"]
    assert found(tmp_path, tmp_path / "index" / "sub", skip=[tmp_path / "index"]) == []


def test_include_and_exclude_globs(tmp_path):
    make(tmp_path, "a.md", "b.txt", "docs/c.md", "docs/d.txt", "docs/old/e.md", "src/docs/f.txt")
    assert found(tmp_path, include=["*.md"]) == ["a.md", "docs/c.md", "docs/old/e.md"]
    assert found(tmp_path, include=["docs/**"]) == ["docs/c.md", "docs/d.txt", "docs/old/e.md"]
    assert found(tmp_path, exclude=["docs/old/", "*.txt"]) == ["a.md", "docs/c.md"]
    assert found(tmp_path, include=["*.md"], exclude=["docs/**"]) == ["a.md"]
    assert found(tmp_path, include=["*.md", "!docs/old/*"]) == ["a.md", "docs/c.md"]


def test_globs_are_relative_to_the_root_a_file_was_found_under(tmp_path):
    make(tmp_path, "docs/c.md", "docs/sub/d.md")
    assert found(tmp_path, tmp_path / "docs", include=["sub/**"]) == ["docs/sub/d.md"]


def test_single_file_roots_are_yielded_even_if_hidden_or_ignored(tmp_path):
    make(tmp_path, ".hidden.md", "ignored.log", "other.txt")
    (tmp_path / ".gitignore").write_text("*.log\n")
    roots = [tmp_path / "ignored.log", tmp_path / ".hidden.md"]
    assert found(tmp_path, *roots) == [".hidden.md", "ignored.log"]


def test_overlapping_roots_yield_each_file_once(tmp_path):
    make(tmp_path, "a.md", "sub/b.md", "sub/c.md")
    roots = [tmp_path / "sub", tmp_path, tmp_path / "sub" / "b.md", tmp_path / "sub"]
    assert found(tmp_path, *roots) == ["a.md", "sub/b.md", "sub/c.md"]


def test_missing_root_is_reported_and_the_rest_still_walked(tmp_path):
    make(tmp_path, "a.md")
    results = list(walk([tmp_path / "nope", tmp_path]))
    assert skipped(results) == [Skipped(str(tmp_path / "nope"), "not found")]
    assert [r.path.name for r in results if isinstance(r, FileEntry)] == ["a.md"]


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlinks(tmp_path):
    make(tmp_path, "real/a.md", "outside/b.md")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "link.md").symlink_to(tmp_path / "outside" / "b.md")
    (tmp_path / "tree" / "broken.md").symlink_to(tmp_path / "missing.md")
    (tmp_path / "tree" / "folder").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "tree" / "loop").symlink_to(tmp_path / "tree", target_is_directory=True)
    results = list(walk([tmp_path / "tree"]))
    files = [r.path for r in results if isinstance(r, FileEntry)]
    assert files == [(tmp_path / "outside" / "b.md").resolve()]
    reasons = {Path(s.path).name: s.reason for s in skipped(results)}
    assert reasons == {
        "broken.md": "broken symlink",
        "folder": "symlinked folder (not followed)",
        "loop": "symlinked folder (not followed)",
    }


def test_broken_symlink_that_is_ignored_stays_silent(tmp_path):
    (tmp_path / "gone.tmp").symlink_to(tmp_path / "missing")
    (tmp_path / ".gitignore").write_text("*.tmp\n")
    assert list(walk([tmp_path])) == []


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads every folder")
def test_unreadable_folder_is_reported_and_the_walk_goes_on(tmp_path):
    make(tmp_path, "a.md", "locked/b.md", "z.md")
    (tmp_path / "locked").chmod(0)
    try:
        results = list(walk([tmp_path]))
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert skipped(results) == [Skipped(str((tmp_path / "locked").resolve()), "unreadable folder")]
    assert [r.path.name for r in results if isinstance(r, FileEntry)] == ["a.md", "z.md"]


def test_unreadable_folder_via_a_failing_scandir(tmp_path, monkeypatch):
    """The same as above, for runs as root, where permissions do not stop reading."""
    make(tmp_path, "a.md", "locked/b.md", "z.md")
    locked = str((tmp_path / "locked").resolve())
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    results = list(walk([tmp_path]))
    assert skipped(results) == [Skipped(locked, "unreadable folder")]
    assert [r.path.name for r in results if isinstance(r, FileEntry)] == ["a.md", "z.md"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rust-book", "python-peps"])
def test_real_folders(name):
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    started = time.perf_counter()
    results = list(walk([folder]))
    elapsed = time.perf_counter() - started
    files = [r for r in results if isinstance(r, FileEntry)]
    print(f"\n{name}: {len(files)} files, {len(skipped(results))} skipped in {elapsed * 1000:.0f} ms")
    assert files
    assert len({f.path for f in files}) == len(files)
    assert [str(f.path) for f in files] == [str(f.path) for f in walk([folder]) if isinstance(f, FileEntry)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_skipped_link_is_reported_under_its_own_path_not_its_target(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "to-pipe.txt").symlink_to(tmp_path / "pipe")
    (tree / "to-zero.txt").symlink_to("/dev/zero")
    assert skipped(walk([tree])) == [
        Skipped(str(tree.resolve() / "to-pipe.txt"), "not a regular file"),
        Skipped(str(tree.resolve() / "to-zero.txt"), "not a regular file"),
    ]


def test_only_a_file_that_is_not_found_is_gone(tmp_path, monkeypatch):
    make(tmp_path, "here.md", "file")
    assert not is_gone(str(tmp_path / "here.md"))
    assert is_gone(str(tmp_path / "nope.md"))
    assert is_gone(str(tmp_path / "file" / "below.md"))  # a folder that became a file
    real_lstat = os.lstat

    def failing_lstat(path, *args, **kwargs):
        if os.fspath(path).endswith("flaky.md"):
            raise OSError(5, "Input/output error", os.fspath(path))
        if os.fspath(path).endswith("private.md"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", failing_lstat)
    assert not is_gone(str(tmp_path / "flaky.md"))
    assert not is_gone(str(tmp_path / "private.md"))


def test_names_that_are_not_utf8_come_back_as_text_and_are_found_again(tmp_path, write_file):
    write_file(os.fsencode(tmp_path) + b"/caf\xe9.md", b"x")
    (tmp_path / "ok-\u00e9.md").write_text("x")
    entries = [r for r in walk([tmp_path]) if isinstance(r, FileEntry)]
    texts = sorted(Path(entry.path_text).name for entry in entries)
    assert texts == ["caf\\xe9.md", "ok-\u00e9.md"]
    assert all(path_text(entry.path).encode("utf-8") for entry in entries)
    assert not any(is_gone(entry.path_text) for entry in entries)
    assert is_gone(str(tmp_path / "caf\\xe8.md"))
    assert path_text("lone \ud800 surrogate") == "lone \\ud800 surrogate"
