"""Line bookkeeping shared by the line-based loaders (plain text, Markdown, reST, source code).

These formats keep the decoded file as :attr:`ParsedDocument.text`, so a block's character span and its
source line numbers come from the same line table.
"""

from __future__ import annotations

from itertools import accumulate

from semsearch.types import Block

# Long runs without a blank line (a wrapped poem, a CSV, a big function) are cut into pieces of this
# many lines so that every block's line range stays small enough to be useful as a location.
MAX_BLOCK_LINES = 50


class SourceLines:
    """A text split on ``\\n`` with the offset at which each line starts (line ``i`` is 0-based)."""

    __slots__ = ("text", "lines", "offsets")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.offsets = list(accumulate((len(line) + 1 for line in self.lines), initial=0))

    def __len__(self) -> int:
        return len(self.lines)

    def is_blank(self, i: int) -> bool:
        """Whether line ``i`` holds only whitespace."""
        line = self.lines[i]
        return not line or line.isspace()

    def block(self, first: int, last: int, kind: str = "paragraph", level: int = 0) -> Block | None:
        """The block covering lines ``first..last`` (inclusive), stripped; ``None`` if it is empty."""
        while first <= last and self.is_blank(first):
            first += 1
        while last >= first and self.is_blank(last):
            last -= 1
        if first > last:
            return None
        head = self.lines[first]
        start = self.offsets[first] + len(head) - len(head.lstrip())
        end = self.offsets[last] + len(self.lines[last].rstrip())
        return Block(start, end, first + 1, last + 1, kind, level)

    def span(self, i: int, start_col: int, end_col: int, kind: str, level: int = 0) -> Block | None:
        """A block for columns ``start_col:end_col`` of line ``i``, stripped; ``None`` if it is empty."""
        piece = self.lines[i][start_col:end_col]
        stripped = piece.strip()
        if not stripped:
            return None
        start = self.offsets[i] + start_col + len(piece) - len(piece.lstrip())
        return Block(start, start + len(stripped), i + 1, i + 1, kind, level)

    def paragraphs(self, lo: int, hi: int, kind: str = "paragraph") -> list[Block]:
        """Blocks for the runs of non-blank lines in ``lo..hi-1``, each at most MAX_BLOCK_LINES long."""
        blocks: list[Block] = []
        run_start = -1
        for i in range(lo, hi):
            if self.is_blank(i):
                if run_start >= 0:
                    self._add_run(blocks, run_start, i - 1, kind)
                    run_start = -1
            elif run_start < 0:
                run_start = i
        if run_start >= 0:
            self._add_run(blocks, run_start, hi - 1, kind)
        return blocks

    def run(self, first: int, last: int, kind: str = "paragraph") -> list[Block]:
        """Blocks for lines ``first..last`` treated as one run (cut every MAX_BLOCK_LINES lines)."""
        blocks: list[Block] = []
        self._add_run(blocks, first, last, kind)
        return blocks

    def _add_run(self, blocks: list[Block], first: int, last: int, kind: str) -> None:
        for piece_start in range(first, last + 1, MAX_BLOCK_LINES):
            block = self.block(piece_start, min(piece_start + MAX_BLOCK_LINES - 1, last), kind)
            if block is not None:
                blocks.append(block)
