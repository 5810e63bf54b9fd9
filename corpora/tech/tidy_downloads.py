"""Tidy a downloads folder by moving files into sub-folders named after their type.

Run ``python tidy_downloads.py ~/Downloads --dry-run`` first to see what would move.
Files are sorted into images/, documents/, archives/, audio/, video/ and other/.
Nothing is ever overwritten: if a file of the same name exists, a number is added.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KINDS = {
    "images": {".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic"},
    "documents": {".pdf", ".docx", ".txt", ".md", ".odt", ".xlsx", ".csv"},
    "archives": {".zip", ".tar", ".gz", ".7z", ".rar"},
    "audio": {".mp3", ".flac", ".wav", ".ogg"},
    "video": {".mp4", ".mkv", ".mov", ".webm"},
}


def kind_of(path: Path) -> str:
    """The folder name for a file, by extension."""
    suffix = path.suffix.lower()
    for kind, suffixes in KINDS.items():
        if suffix in suffixes:
            return kind
    return "other"


def free_name(target: Path) -> Path:
    """``target``, or ``name (2).ext``, ``name (3).ext``... whichever does not exist yet."""
    candidate, number = target, 2
    while candidate.exists():
        candidate = target.with_name(f"{target.stem} ({number}){target.suffix}")
        number += 1
    return candidate


def tidy(folder: Path, dry_run: bool) -> int:
    """Move every file directly inside ``folder``; returns how many were (or would be) moved."""
    moved = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        destination = free_name(folder / kind_of(path) / path.name)
        print(f"{path.name} -> {destination.parent.name}/{destination.name}")
        if not dry_run:
            destination.parent.mkdir(exist_ok=True)
            shutil.move(str(path), destination)
        moved += 1
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="only print what would happen")
    args = parser.parse_args()
    count = tidy(args.folder.expanduser(), args.dry_run)
    print(f"{count} file(s) {'would be ' if args.dry_run else ''}moved")


if __name__ == "__main__":
    main()
