"""Bytes to text for every text-based format: encoding detection, binary detection, newline cleanup."""

from __future__ import annotations

import codecs
import re

from semsearch.errors import LoaderError

# C0 control characters that never appear in real text (tab, newlines, form feed and ESC are allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_SNIFF_CHARS = 65536
_MAX_CONTROL_SHARE = 0.01

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode(data: bytes) -> tuple[str, str]:
    """Return ``(text, encoding)`` for a text file's bytes, with newlines normalised to ``\\n``.

    A UTF-16/32 byte order mark decides first; otherwise NUL bytes mean a binary file, then UTF-8 is
    tried (its BOM stripped), then charset-normalizer's best guess. Text that is mostly control
    characters is binary too. Raises :class:`LoaderError` with ``"empty file"``, ``"binary file"`` or
    ``"undecodable text"``.
    """
    if not data.strip():
        raise LoaderError("empty file")
    text, encoding = _decode_bytes(data)
    text = normalize_newlines(text)
    if not text.strip():
        raise LoaderError("empty file")
    sample = text[:_SNIFF_CHARS]
    if len(_CONTROL.findall(sample)) > _MAX_CONTROL_SHARE * len(sample):
        raise LoaderError("binary file")
    return text, encoding


def normalize_newlines(text: str) -> str:
    """``text`` with CRLF and lone CR turned into LF."""
    if "\r" in text:
        return text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode_bytes(data: bytes) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                raise LoaderError("undecodable text") from None
    if b"\x00" in data:
        raise LoaderError("binary file")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    return _guess(data)


def _guess(data: bytes) -> tuple[str, str]:
    import charset_normalizer

    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise LoaderError("undecodable text")
    # charset-normalizer often ties several single-byte code pages on Western text and then picks
    # cp1250 by name order, which turns "è" into "č". Prefer cp1252 whenever it is among the tied best.
    for match in matches:
        tied = match.chaos <= best.chaos and match.coherence >= best.coherence
        if tied and "cp1252" in match.could_be_from_charset:
            try:
                return data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                break
    return str(best), best.encoding
