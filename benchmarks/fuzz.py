"""Index a folder of a thousand malformed files with the real `semsearch index`, and require that
nothing crashes, nothing hangs and every file is accounted for.

    .venv/bin/python benchmarks/fuzz.py                   # 1,000+ files, the real model
    .venv/bin/python benchmarks/fuzz.py --files 100 --fake-embedder   # what tests/test_fuzz.py runs

Every supported format (text, Markdown, reST, HTML, PDF, DOCX, source code) is made valid, then
damaged in several ways: truncated, bit-flipped, shuffled, saved under another format's
extension, emptied, filled with NUL bytes, re-encoded (Latin-1, UTF-16 with and without a byte
order mark, invalid UTF-8), given a line of megabytes. Each format also gets its own kinds of
damage: PDFs with a broken cross-reference table, a looping page tree or a content stream that
keeps the parser busy; DOCX files that are zips of junk, lack their document, hold broken XML or a
decompression bomb; HTML nested a hundred thousand deep; Markdown and reST oddities. Beside them:
names that are not UTF-8, are 255 bytes long or hold newlines; FIFOs and sockets; dangling,
looping and chained links; a file of more than 50 MB; files and a folder without read permission
(root reads them anyway).

The run must exit 0 within the deadline with no traceback; every generated file must be indexed
or skipped with a reason; `semsearch verify` must pass; a search must work; and indexing again
must find every indexed file unchanged.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import random
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))

from fake_cli import CHILD as FAKE_EMBEDDER_CHILD  # noqa: E402
from hostile_files import busy_pdf, docx_bomb  # noqa: E402
from pdfgen import make_pdf  # noqa: E402

os.environ["SEMSEARCH_KEEP_WARM"] = "0"  # the searches run here must not leave servers behind

# Limits for the run: low enough that the hostile files cost seconds, not minutes, and far from
# what any other file here needs (the slowest, deep HTML, takes 1-2 s), so that a loaded machine
# does not skip an ordinary file one run and index it the next.
READ_SECONDS = 30
READ_MEMORY_MB = 512
SPECIAL = 18  # files special() makes

WORDS = (
    "tide harbour ledger violin comet glacier ferry bread rose lantern orchard quarry meadow "
    "compass anchor beacon canyon delta ember falcon garnet hollow island jasmine kestrel"
).split()


@dataclass(frozen=True)
class Made:
    """One thing put in the folder: how semsearch should report it, and what kind of damage it is."""

    path: bytes  # as created (a name need not be UTF-8)
    kind: str
    reported_as: bytes | None = None  # the path it is indexed under, if not its own (a link's target)


# -- valid documents of every format ---------------------------------------------------------------


def sentence(rng: random.Random, words: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def paragraphs(rng: random.Random, count: int = 3) -> list[str]:
    return [" ".join(sentence(rng) for _ in range(rng.randrange(2, 5))) for _ in range(count)]


def valid_text(rng: random.Random) -> bytes:
    return "\n\n".join(paragraphs(rng)).encode()


def valid_markdown(rng: random.Random) -> bytes:
    parts = [f"# {sentence(rng, 3)}", *paragraphs(rng, 2), "## Details", "- one\n- two\n  - nested",
             "```python\nprint('hello')\n```", "| a | b |\n|---|---|\n| 1 | 2 |", *paragraphs(rng, 1)]
    return "\n\n".join(parts).encode()


def valid_rst(rng: random.Random) -> bytes:
    title = sentence(rng, 3)
    parts = [title, "=" * len(title), "", *paragraphs(rng, 2), "", "Section", "-------", "",
             ".. note::", "", "   " + sentence(rng), "", "::", "", "    literal block", ""]
    return "\n".join(parts).encode()


def valid_html(rng: random.Random) -> bytes:
    body = "".join(f"<p>{text}</p>\n" for text in paragraphs(rng))
    return (f"<!doctype html><html><head><title>{sentence(rng, 3)}</title></head><body>"
            f"<h1>{sentence(rng, 3)}</h1>\n{body}<ul><li>item</li></ul></body></html>").encode()


def valid_pdf(rng: random.Random) -> bytes:
    return make_pdf([[sentence(rng, 8) for _ in range(6)] for _ in range(rng.randrange(1, 4))],
                    title=sentence(rng, 3))


def valid_docx(rng: random.Random) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(sentence(rng, 3), level=1)
    for text in paragraphs(rng):
        document.add_paragraph(text)
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "cell"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def valid_code(rng: random.Random) -> bytes:
    return (f'"""{sentence(rng)}"""\n\n\ndef {rng.choice(WORDS)}(x):\n    """{sentence(rng)}"""\n'
            f"    return x * {rng.randrange(100)}\n").encode()


FORMATS: dict[str, tuple[str, Callable[[random.Random], bytes]]] = {
    "text": (".txt", valid_text),
    "markdown": (".md", valid_markdown),
    "rst": (".rst", valid_rst),
    "html": (".html", valid_html),
    "pdf": (".pdf", valid_pdf),
    "docx": (".docx", valid_docx),
    "code": (".py", valid_code),
}

# -- damage that applies to any bytes -----------------------------------------------------------------


def truncated(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, max(1, len(data)))]


def bit_flipped(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 40)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def shuffled(data: bytes, rng: random.Random) -> bytes:
    pieces = [data[i : i + 64] for i in range(0, len(data), 64)]
    rng.shuffle(pieces)
    return b"".join(pieces)


def with_nuls(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 20)):
        out.insert(rng.randrange(len(out) + 1), 0)
    return bytes(out)


def random_junk(data: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(1, 4096))


def zeroed_tail(data: bytes, rng: random.Random) -> bytes:
    cut = rng.randrange(0, max(1, len(data)))
    return data[:cut] + bytes(len(data) - cut)


GENERIC_DAMAGE: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncated": truncated,
    "bit-flipped": bit_flipped,
    "shuffled": shuffled,
    "nul-bytes": with_nuls,
    "junk": random_junk,
    "zeroed-tail": zeroed_tail,
}

# -- damage for text formats ---------------------------------------------------------------------------


def text_oddities(rng: random.Random) -> dict[str, bytes]:
    text = valid_text(rng).decode()
    return {
        "empty": b"",
        "whitespace-only": b" \n\t\n   \r\n",
        "one-byte": b"x",
        "latin-1": (text + " café naïve déjà").encode("latin-1"),
        "utf-16-bom": (text + " ünïcödé").encode("utf-16"),
        "utf-16-no-bom": (text + " ünïcödé").encode("utf-16-le"),
        "utf-32": text.encode("utf-32"),
        "invalid-utf-8": text.encode()[:50] + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1" + text.encode()[50:],
        "overlong-utf-8": b"\xc0\xaf\xe0\x80\xaf" * 50 + text.encode(),
        "utf-8-bom": codecs.BOM_UTF8 + text.encode(),
        "lone-surrogates": text.encode("utf-8", "surrogatepass")[:20] + "\ud800\udfff".encode("utf-8", "surrogatepass") * 20,
        "all-nuls": bytes(rng.randrange(1, 5000)),
        "control-chars": bytes(rng.randrange(1, 32) for _ in range(3000)),
        "cr-only-newlines": text.replace("\n", "\r").encode(),
        "huge-line": (sentence(rng) + " ").encode() * 3000,  # ~250 KB, no newline
        "many-empty-lines": b"\n" * 200_000 + text.encode(),
        "one-giant-word": b"a" * 100_000,
        "mixed-encodings": text.encode("utf-8") + "é".encode("latin-1") + text.encode("utf-16"),
        "right-to-left": "\u202e".join(text.split(" ")).encode(),
        "emoji-and-combining": ("e\u0301" * 500 + "👩‍👩‍👧‍👦" * 300 + text).encode(),
    }


def markdown_oddities(rng: random.Random) -> dict[str, bytes]:
    text = sentence(rng)
    return {
        "nested-quotes": (">" * 5000 + " " + text).encode(),
        "nested-lists": "".join("  " * i + "- " + text + "\n" for i in range(500)).encode(),
        "unclosed-fence": ("# T\n\n```\n" + "code line\n" * 5000).encode(),
        "headings-only": "".join("#" * (i % 7 + 1) + " h\n" for i in range(5000)).encode(),
        "emphasis-storm": ("*a **b" * 5000).encode(),
        "link-storm": ("[" * 10000 + "x" + "](" * 10000).encode(),
        "huge-table": ("| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 5000).encode(),
        "setext-storm": ("t\n===\n" * 10000).encode(),
        "html-in-markdown": ("<div>" * 5000 + text + "</div>" * 10).encode(),
        "front-matter-only": b"---\ntitle: x\n---\n",
        "tabs-and-cr": ("\t# T\r\n\t\t" + text + "\r") .encode() * 1000,
    }


def rst_oddities(rng: random.Random) -> dict[str, bytes]:
    text = sentence(rng)
    return {
        "deep-indent": "".join(" " * i + text + "\n\n" for i in range(0, 3000, 10)).encode(),
        "underline-mismatch": ("Title\n=\n\n" + text + "\n") .encode() * 2000,
        "overline-only": ("=====\nTitle\n\n" + text).encode(),
        "adornment-storm": "".join(c * 80 + "\n" for c in "=-~^\"'`#*+" * 300).encode(),
        "unknown-directives": (".. weird::\n   :opt: x\n\n   body\n\n" * 3000).encode(),
        "unclosed-literal": ("::\n\n" + "    literal\n" * 20000).encode(),
        "broken-table": ("+---+---+\n| a | b\n+---+\n" * 3000).encode(),
        "nested-bullets": "".join("  " * (i % 200) + "* " + text + "\n" for i in range(3000)).encode(),
    }


def html_oddities(rng: random.Random) -> dict[str, bytes]:
    text = sentence(rng)
    return {
        "absurd-nesting": ("<div>" * 25_000 + text + "</div>" * 25_000).encode(),
        "unclosed-nesting": ("<html><body>" + "<p><span><b>" * 5_000 + text).encode(),
        "unclosed-comment": ("<html><body><!-- " + text * 1000).encode(),
        "script-only": ("<script>" + "var a = 1;" * 10000 + "</script>").encode(),
        "huge-attribute": ('<p title="' + "x" * 1_000_000 + '">' + text + "</p>").encode(),
        "wrong-meta-charset": ('<meta charset="utf-16"><p>' + text + " café</p>").encode("latin-1"),
        "entity-storm": ("&amp;" * 30_000 + "&#xFFFFFFFF;&#0;&bogus;").encode(),
        "table-storm": ("<table>" + "<tr><td>" * 5_000 + text).encode(),
        "cdata-and-pi": ("<![CDATA[" + text + "]]><?xml version='1.0'?><p>" + text + "</p>").encode(),
        "binary-in-body": b"<html><body>" + rng.randbytes(5000) + b"</body></html>",
    }


def code_oddities(rng: random.Random) -> dict[str, bytes]:
    return {
        "minified-line": ("var a=" + "[1,2,{b:3}]," * 20_000 + "0;").encode(),
        "deep-json": ("[" * 50_000 + "]" * 50_000).encode(),
        "tabs-only": b"\t" * 100_000,
        "no-newline-at-all": ("x = 1; " * 20_000).encode(),
    }


# -- damage for PDF and DOCX --------------------------------------------------------------------------


def pdf_oddities(rng: random.Random) -> dict[str, bytes]:
    good = valid_pdf(rng)
    xref = good.rindex(b"xref")
    looping_tree = (
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>\nendobj\n"
        b"3 0 obj\n<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )
    return {
        "broken-xref-offsets": good[:xref] + good[xref:].replace(b"0000000", b"9999999"),
        "no-xref": good[:xref] + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n",
        "startxref-past-end": good.replace(b"startxref\n", b"startxref\n99999999"),
        "no-eof-marker": good.replace(b"%%EOF", b""),
        "header-only": b"%PDF-1.7\n",
        "looping-page-tree": looping_tree,
        "huge-page-count": good.replace(b"/Count ", b"/Count 9999999999"),
        "self-referencing-prev": good.replace(b"/Root", b"/Prev %d /Root" % xref),
        "junk-flate-stream": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                              b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
                              b"3 0 obj\n<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>\nendobj\n"
                              b"4 0 obj\n<< /Length 500 /Filter /FlateDecode >>\nstream\n" + rng.randbytes(500)
                              + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"),
        "encrypted-nonsense": good.replace(b"/Root", b"/Encrypt << /Filter /Standard /V 9 /R 9 >> /Root"),
        "no-text-layer": make_pdf([[]]),
        "keeps-parser-busy": busy_pdf(pages=200),
    }


def docx_oddities(rng: random.Random) -> dict[str, bytes]:
    good = valid_docx(rng)

    def rezip(change: Callable[[str, bytes], bytes | None]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                data = change(info.filename, source.read(info))
                if data is not None:
                    target.writestr(info.filename, data)
        return out.getvalue()

    junk_zip = io.BytesIO()
    with zipfile.ZipFile(junk_zip, "w") as archive:
        for i in range(5):
            archive.writestr(f"junk{i}.bin", rng.randbytes(1000))
    slip = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(slip, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
        target.writestr("../../../../tmp/escaped.xml", b"<x/>")
        target.writestr("/etc/absolute.xml", b"<x/>")
    zip_slip = slip.getvalue()
    empty_zip = io.BytesIO()
    zipfile.ZipFile(empty_zip, "w").close()
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i else b"&lol;") * 10) for i in range(1, 10))
              + b']><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
              b"<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>")
    return {
        "zip-of-junk": junk_zip.getvalue(),
        "empty-zip": empty_zip.getvalue(),
        "no-document-part": rezip(lambda name, data: None if name == "word/document.xml" else data),
        "broken-document-xml": rezip(lambda name, data: data[: len(data) // 2] if name == "word/document.xml" else data),
        "no-content-types": rezip(lambda name, data: None if name == "[Content_Types].xml" else data),
        "billion-laughs": rezip(lambda name, data: laughs if name == "word/document.xml" else data),
        "zip-slip-names": zip_slip,
        "decompression-bomb": docx_bomb(300),
        "truncated-central-directory": good[: len(good) - 30],
    }


ODDITIES = [
    (fmt, suffix, oddities, tuple(names.split()))
    for fmt, suffix, oddities, names in (
        ("text", ".txt", text_oddities,
         "empty whitespace-only one-byte latin-1 utf-16-bom utf-16-no-bom utf-32 invalid-utf-8 overlong-utf-8 "
         "utf-8-bom lone-surrogates all-nuls control-chars cr-only-newlines huge-line many-empty-lines "
         "one-giant-word mixed-encodings right-to-left emoji-and-combining"),
        ("markdown", ".md", markdown_oddities,
         "nested-quotes nested-lists unclosed-fence headings-only emphasis-storm link-storm huge-table "
         "setext-storm html-in-markdown front-matter-only tabs-and-cr"),
        ("rst", ".rst", rst_oddities,
         "deep-indent underline-mismatch overline-only adornment-storm unknown-directives unclosed-literal "
         "broken-table nested-bullets"),
        ("html", ".html", html_oddities,
         "absurd-nesting unclosed-nesting unclosed-comment script-only huge-attribute wrong-meta-charset "
         "entity-storm table-storm cdata-and-pi binary-in-body"),
        ("code", ".py", code_oddities, "minified-line deep-json tabs-only no-newline-at-all"),
        ("pdf", ".pdf", pdf_oddities,
         "broken-xref-offsets no-xref startxref-past-end no-eof-marker header-only looping-page-tree "
         "huge-page-count self-referencing-prev junk-flate-stream encrypted-nonsense no-text-layer keeps-parser-busy"),
        ("docx", ".docx", docx_oddities,
         "zip-of-junk empty-zip no-document-part broken-document-xml no-content-types billion-laughs "
         "zip-slip-names decompression-bomb truncated-central-directory"),
    )
]

# -- the folder -------------------------------------------------------------------------------------------


class Folder:
    """Writes the files and remembers each."""

    def __init__(self, root: Path) -> None:
        self.root = os.fsencode(root)
        self.made: list[Made] = []

    def write(self, relative: bytes, data: bytes, kind: str, mode: int | None = None) -> bytes:
        path = os.path.join(self.root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(path, mode)
        self.made.append(Made(path, kind))
        return path


def generate(root: Path, files: int, seed: int = 7) -> list[Made]:
    """Fill ``root`` with at least ``files`` malformed files (a sample of every kind when fewer)."""
    rng = random.Random(seed)
    folder = Folder(root)
    planned: list[tuple[bytes, Callable[[], bytes], str]] = []  # (name, content maker, kind)

    # Every format: valid, damaged in every generic way, and under every other format's extension.
    for fmt, (suffix, make) in FORMATS.items():
        planned.append((f"{fmt}/valid{suffix}".encode(), lambda make=make: make(rng), f"{fmt}: valid"))
        for damage, apply in GENERIC_DAMAGE.items():
            planned.append((f"{fmt}/{damage}{suffix}".encode(),
                            lambda make=make, apply=apply: apply(make(rng), rng), f"{fmt}: {damage}"))
        for other, (other_suffix, _) in FORMATS.items():
            if other != fmt:
                planned.append((f"{fmt}/as-{other}{other_suffix}".encode(), lambda make=make: make(rng),
                                "wrong extension"))
    made_once: dict[str, dict[str, bytes]] = {}  # each oddities() call makes all of its files

    def oddity(fmt: str, oddities: Callable[[random.Random], dict[str, bytes]], name: str) -> bytes:
        if fmt not in made_once:
            made_once[fmt] = oddities(random.Random(seed))
        return made_once[fmt][name]

    for fmt, suffix, oddities, names in ODDITIES:
        for name in names:
            planned.append((f"{fmt}-odd/{name}{suffix}".encode(),
                            lambda fmt=fmt, oddities=oddities, name=name: oddity(fmt, oddities, name), f"{fmt}: {name}"))
    for name, suffix in ((b"a\xffb", b".txt"), (b"caf\xe9", b".md"), (b"\xc3\x28", b".rst"),
                         (b"x" * 250, b".txt"), (b"new\nline", b".txt"), (b"-rf", b".txt"),
                         (b"sp a ce", b".md"), (b"back\\slash", b".txt"), ("日本語".encode(), b".md"),
                         ("emoji👩‍👩‍👧".encode(), b".txt"), (b"tab\tname", b".txt"), (b"quote\"'", b".txt"),
                         (b"a\\xffb", b".txt")):  # spells out the escape of the first name
        planned.append((b"names/" + name + suffix, lambda: valid_text(rng), "odd name"))
    for name in (b"picture.png", b"archive.zip", b"noext", b"Cargo.lock", b"app.min.js", b"data.bin"):
        planned.append((b"unsupported/" + name, lambda: rng.randbytes(500), "unsupported"))

    fixed = len(planned)
    # Random mixtures until there are enough: a random format, a random generic damage, twice over.
    counter = 0
    while len(planned) < files - SPECIAL:
        fmt = rng.choice(list(FORMATS))
        suffix, make = FORMATS[fmt]
        first, second = rng.sample(list(GENERIC_DAMAGE), 2)
        planned.append((f"mixed/{counter:04}-{fmt}-{first}-{second}{suffix}".encode(),
                        lambda make=make, first=first, second=second: GENERIC_DAMAGE[second](
                            GENERIC_DAMAGE[first](make(rng), rng), rng), f"{fmt}: {first} + {second}"))
        counter += 1
    if files < fixed + SPECIAL:  # a reduced run: a sample of every kind; the hostile files and names always in
        always = [p for p in planned if p[2] == "odd name"
                  or p[0].endswith((b"keeps-parser-busy.pdf", b"decompression-bomb.docx"))]
        rest = [p for p in planned if p not in always]
        planned = always + random.Random(seed).sample(rest, max(0, files - SPECIAL - len(always)))

    for name, make, kind in planned:
        folder.write(name, make(), kind)
    special(folder, rng)
    return folder.made


def special(folder: Folder, rng: random.Random) -> None:
    """Things that are not plain files, links of every kind, permissions, sizes, folders."""
    root = folder.root
    base = os.path.join(root, b"special")
    os.makedirs(base, exist_ok=True)
    target = folder.write(b"special/target.txt", valid_text(rng), "link target")

    def link(name: bytes, points_to: bytes, kind: str, reported_as: bytes | None = None) -> None:
        path = os.path.join(base, name)
        os.symlink(points_to, path)
        folder.made.append(Made(path, kind, reported_as))

    link(b"dangling.txt", b"nowhere/missing.txt", "dangling link")
    link(b"loop-a.txt", b"loop-b.txt", "looping link")
    link(b"loop-b.txt", b"loop-a.txt", "looping link")
    link(b"self.txt", b"self.txt", "link to itself")
    link(b"to-dev-zero.txt", b"/dev/zero", "link to a device")
    link(b"to-dev-null.md", b"/dev/null", "link to a device")
    link(b"to-folder", b"../text", "link to a folder")
    link(b"to-target.txt", b"target.txt", "link to a file", reported_as=target)
    link(b"chain.txt", b"to-target.txt", "chain of links", reported_as=target)
    outside = os.path.join(os.path.dirname(root), b"outside.md")
    with open(outside, "wb") as handle:
        handle.write(valid_markdown(rng))
    link(b"to-outside.md", outside, "link out of the folder", reported_as=os.path.realpath(outside))

    fifo = os.path.join(base, b"pipe.txt")
    os.mkfifo(fifo)
    folder.made.append(Made(fifo, "FIFO"))
    sock_path = os.path.join(base, b"socket.md")
    if len(sock_path) < 100:  # AF_UNIX names are short
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(sock_path)
        server.close()
        folder.made.append(Made(sock_path, "socket"))

    folder.write(b"special/unreadable.txt", valid_text(rng), "no read permission", mode=0)
    folder.write(b"special/write-only.md", valid_markdown(rng), "no read permission", mode=stat.S_IWUSR)
    folder.write(b"locked-folder/inside.txt", valid_text(rng), "in a folder without permissions")
    os.chmod(os.path.join(root, b"locked-folder"), 0)
    big = os.path.join(base, b"huge.txt")
    with open(big, "wb") as handle:
        handle.truncate(51 * 2**20)  # sparse: costs no disk
    folder.made.append(Made(big, "larger than the maximum"))
    deep = b"/".join(b"d%d" % i for i in range(60))
    folder.write(b"deep/" + deep + b"/bottom.md", valid_markdown(rng), "60 folders deep")


def restore_permissions(root: Path) -> None:
    for folder, subfolders, names in os.walk(root):
        for name in subfolders + names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    os.chmod(root, 0o755)


# -- running it -----------------------------------------------------------------------------------------


def semsearch(*args: str, fake: bool, timeout: float) -> subprocess.CompletedProcess:
    """The real CLI in a new process; if it hangs, its stacks are in the TimeoutExpired's stderr."""
    hang_report = f"import faulthandler; faulthandler.dump_traceback_later({max(1.0, timeout - 5)}, exit=True)\n"
    if fake:
        code = hang_report + FAKE_EMBEDDER_CHILD.format(tests=str(TESTS), memory_mb=0)
    else:
        code = hang_report + "import runpy, sys\nsys.argv[0] = 'semsearch'\nrunpy.run_module('semsearch', run_name='__main__')\n"
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def campaign(workdir: Path, files: int, *, fake: bool, timeout: float, seed: int = 7) -> dict:
    """Generate, index, check; raises AssertionError on the first broken requirement."""
    from semsearch.walker import path_text

    root = workdir / "fuzz"
    root.mkdir()
    started = time.perf_counter()
    made = generate(root, files, seed)
    generated_seconds = time.perf_counter() - started
    index = workdir / "index"
    limits = ["--max-read-seconds", str(READ_SECONDS), "--max-read-memory", str(READ_MEMORY_MB)]
    try:
        started = time.perf_counter()
        try:
            run = semsearch("--index", str(index), "index", str(root), "--json", *limits, fake=fake, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            stacks = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
            raise AssertionError(f"semsearch index hung: not finished after {timeout:.0f} s\n{stacks}") from None
        index_seconds = time.perf_counter() - started
        assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
        assert "Traceback" not in run.stderr, run.stderr[-2000:]
        summary = json.loads(run.stdout)

        skipped = {item["path"]: item["reason"] for item in summary["skipped_files"]}
        assert all(reason.strip() for reason in skipped.values()), "a file was skipped without a reason"
        with sqlite3.connect(index / "semsearch.db") as connection:
            indexed = {row[0] for row in connection.execute("SELECT path FROM documents")}
        unaccounted = []
        for item in made:
            own = path_text(os.fsdecode(item.path))
            reported = path_text(os.fsdecode(item.reported_as or os.path.realpath(item.path)))
            ancestors = [path_text(os.fsdecode(parent)) for parent in _parents(item.path)]
            if own in skipped or reported in indexed or any(parent in skipped for parent in ancestors):
                continue
            unaccounted.append(f"{own} ({item.kind})")
        assert not unaccounted, f"{len(unaccounted)} files neither indexed nor skipped: {unaccounted[:10]}"
        expected_paths = {path_text(os.fsdecode(item.reported_as or os.path.realpath(item.path))) for item in made}
        strangers = indexed - expected_paths
        assert not strangers, f"indexed files that were never generated: {sorted(strangers)[:10]}"

        verify = semsearch("--index", str(index), "verify", "--json", fake=fake, timeout=600)
        assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout + verify.stderr
        search = semsearch("--index", str(index), "search", "harbour ledger", "--json", fake=fake, timeout=600)
        assert search.returncode == 0, search.stderr
        hits = json.loads(search.stdout)
        assert hits, "a search found nothing"
        again = semsearch("--index", str(index), "index", str(root), "--json", *limits, fake=fake, timeout=timeout)
        assert again.returncode == 0, again.stderr[-2000:]
        second = json.loads(again.stdout)
        skipped_again = {item["path"]: item["reason"] for item in second["skipped_files"]}
        differences = {path: (skipped.get(path, "indexed"), skipped_again.get(path, "indexed"))
                       for path in set(skipped) ^ set(skipped_again)}
        assert not differences, f"a second run read some files differently (first, second): {differences}"
        assert (second["new"], second["changed"], second["removed"]) == (0, 0, 0), second
        assert second["unchanged"] == len(indexed), second
    finally:
        restore_permissions(root)
    kinds = Counter(item.kind.split(":")[0] for item in made)
    return {
        "files": len(made),
        "indexed": len(indexed),
        "skipped": len(skipped),
        "chunks": summary["chunks_added"],
        "kinds": len({item.kind for item in made}),
        "by_group": dict(kinds.most_common()),
        "skipped_reasons": summary["skipped_reasons"],
        "generate_seconds": round(generated_seconds, 1),
        "index_seconds": round(index_seconds, 1),
        "search_hits": len(hits),
    }


def _parents(path: bytes) -> list[bytes]:
    parents = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return parents
        parents.append(parent)
        path = parent


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000, help="at least this many files")
    parser.add_argument("--fake-embedder", action="store_true", help="the tests' fake embedder, not the model")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before the run counts as hung")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    command = f"python benchmarks/fuzz.py --files {args.files} --seed {args.seed}"
    if args.fake_embedder:
        command += " --fake-embedder"
    print(f"Command: `{command}`", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semsearch-fuzz-") as workdir:
        tally = campaign(Path(workdir), args.files, fake=args.fake_embedder, timeout=args.timeout, seed=args.seed)
    tally["total_seconds"] = round(time.perf_counter() - started)
    load = os.getloadavg()
    tally["load_average"] = [round(value, 1) for value in load]
    print(json.dumps(tally, indent=2, ensure_ascii=False))
    print("Every file was indexed or skipped with a reason; no crash, no hang; verify and search passed.")


if __name__ == "__main__":
    main()
