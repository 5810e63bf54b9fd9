"""Small files that make a parser work for a very long time or need a great deal of memory.

Used by tests/test_reader.py and benchmarks/fuzz.py; each is made on the spot, nothing is stored.
"""

from __future__ import annotations

import io
import zlib


def busy_pdf(pages: int = 400, operators: int = 10_000) -> bytes:
    """A valid PDF of some 60 KB whose pages all share one content stream of ``operators``
    text-showing operators, deflated (1.2 KB for 260 KB of operators).

    pypdf parses the stream again for every page (about 2.7 s a page for 10,000 operators on a
    loaded 2-core machine), so the default keeps it busy for a quarter of an hour. The file is
    not broken: it is simply a great deal of work, which no version of a parser can refuse
    without refusing real documents.
    """
    content = b"BT /F1 12 Tf 72 720 Td " + b"(lorem ipsum dolor) Tj 0 -14 Td " * operators + b"ET"
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % (5 + i) for i in range(pages)), pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 4 0 R >>"
    )
    objects.extend([page] * pages)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def docx_bomb(xml_megabytes: int = 300) -> bytes:
    """A .docx of a few hundred kilobytes whose ``word/document.xml`` unzips to ``xml_megabytes``
    MB of paragraphs (a decompression bomb); everything else is a real document's."""
    import zipfile

    import docx

    template = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("A document of modest size.")
    document.save(template)
    paragraph = b"<w:p><w:r><w:t>" + b"a" * 1000 + b"</w:t></w:r></w:p>"
    count = xml_megabytes * 2**20 // len(paragraph)
    out = io.BytesIO()
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            if info.filename != "word/document.xml":
                bomb.writestr(info, source.read(info))
                continue
            head, tail = source.read(info).split(b"<w:body>", 1)
            with bomb.open("word/document.xml", "w", force_zip64=True) as member:
                member.write(head + b"<w:body>")
                block = paragraph * 1000
                for _ in range(count // 1000):
                    member.write(block)
                member.write(tail)  # the template's own paragraph, section properties and end tags
    return out.getvalue()
