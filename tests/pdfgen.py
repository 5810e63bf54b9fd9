"""A tiny, dependency-free PDF writer for tests and the bundled corpus.

``make_pdf([["line 1", "line 2"], ["page 2"]], title="T")`` returns the bytes of a valid PDF with one
Helvetica text line per string (an empty string leaves a blank line), which pypdf can read back.
A line given as ``(text, size)`` is set in that font size instead of 11 points.
"""

from __future__ import annotations

_PAGE_WIDTH, _PAGE_HEIGHT = 612, 792
_MARGIN = 72
_FONT_SIZE = 11
_LEADING = 15


def make_pdf(pages: list[list[str | tuple[str, float]]], title: str | None = None) -> bytes:
    """Return a PDF with one page per item of ``pages``; ``title`` goes into the document info."""
    objects: list[bytes] = []  # objects[i] is object number i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree exists
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        stream = _content(lines)
        contents = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 %d 0 R >> >> "
            b"/Contents %d 0 R >>" % (tree, _PAGE_WIDTH, _PAGE_HEIGHT, font, contents)
        ))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % kid for kid in kids), len(kids))
    info_fields = b"/Producer (semsearch pdfgen)"
    if title is not None:
        info_fields += b" /Title (%s)" % _escape(title)
    info = add(b"<< %s >>" % info_fields)

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, info, xref)
    return bytes(out)


def _content(lines: list[str | tuple[str, float]]) -> bytes:
    parts = [b"BT", b"/F1 %d Tf" % _FONT_SIZE, b"%d TL" % _LEADING, b"%d %d Td" % (_MARGIN, _PAGE_HEIGHT - _MARGIN)]
    for line in lines:
        if isinstance(line, tuple):
            text, size = line
            parts.append(b"/F1 %g Tf (%s) Tj /F1 %d Tf" % (size, _escape(text), _FONT_SIZE))
        elif line:
            parts.append(b"(%s) Tj" % _escape(line))
        parts.append(b"T*")
    parts.append(b"ET")
    return b"\n".join(parts)


def _escape(text: str) -> bytes:
    """A PDF literal string body in WinAnsi encoding (characters it lacks become '?')."""
    raw = text.encode("cp1252", errors="replace")
    out = bytearray()
    for byte in raw:
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif byte < 32 or byte > 126:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out)
