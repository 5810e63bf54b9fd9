"""Turn a file's bytes into a :class:`~semsearch.types.ParsedDocument`.

One module per format; this module only decides which one applies. :func:`is_supported` looks at the
name alone, so a directory walk can skip images and archives without reading them. :func:`load`
raises :class:`~semsearch.errors.LoaderError` whose message is a short lowercase reason meant to be
grouped and counted (``"empty file"``, ``"binary file"``, ``"unreadable pdf"``...); no other
exception escapes it for a bad file.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from semsearch.errors import LoaderError
from semsearch.types import ParsedDocument

__all__ = ["is_supported", "unsupported_reason", "load", "parse_text", "FORMATS"]

FORMATS = ("text", "markdown", "rst", "html", "pdf", "docx", "code")

_BY_SUFFIX: dict[str, str] = {
    ".txt": "text", ".text": "text", ".adoc": "text", ".asciidoc": "text", ".org": "text",
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
    ".mdx": "markdown",
    ".rst": "rst", ".rest": "rst",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
_CODE_SUFFIXES = """
py pyi pyw pyx rs js mjs cjs jsx ts tsx mts cts go java c h cc cpp cxx hpp hh hxx ino cs fs fsx vb
rb php sh bash zsh fish ksh ps1 psm1 bat cmd sql toml yaml yml json jsonc json5 ini cfg conf
properties xml xsd xsl css scss sass less tex sty cls bib r jl lua kt kts swift scala sbt pl pm
hs lhs el clj cljs cljc edn ex exs erl hrl dart m mm f f90 f95 proto graphql gql cmake mk make
gradle groovy vue svelte tf hcl nix zig nim ml mli elm rkt scm lisp lsp cl ada adb ads pas d
awk sed asm s cabal dockerfile gemspec rake vim csv tsv diff patch
""".split()
_BY_SUFFIX.update({f".{suffix}": "code" for suffix in _CODE_SUFFIXES})

# Well-known names of files without an extension (compared upper-case, before any "-", "_" or ".").
_TEXT_NAMES = frozenset("""
README LICENSE LICENCE COPYING COPYRIGHT AUTHORS CONTRIBUTORS CONTRIBUTING CHANGELOG CHANGES NEWS
HISTORY NOTICE INSTALL TODO THANKS CREDITS MAINTAINERS PATENTS
""".split())
_CODE_NAMES = frozenset("""
MAKEFILE GNUMAKEFILE DOCKERFILE CONTAINERFILE VAGRANTFILE JENKINSFILE GEMFILE RAKEFILE PROCFILE
JUSTFILE PIPFILE BREWFILE CODEOWNERS
""".split())
_KNOWN_NAMES = {name: "text" for name in _TEXT_NAMES} | {name: "code" for name in _CODE_NAMES}
_DOTFILES = frozenset({
    ".gitignore", ".gitattributes", ".dockerignore", ".editorconfig", ".bashrc", ".bash_profile",
    ".zshrc", ".profile", ".vimrc",
})
_LOCK_FILES = frozenset({"package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml"})
_NAME_PREFIX = re.compile(r"[-_.]")


def is_supported(path: Path) -> bool:
    """Whether :func:`load` can read a file with this name (decided from the name alone, no I/O)."""
    return _format_of(Path(path)) is not None


def unsupported_reason(path: Path) -> str:
    """Why :func:`is_supported` rejects ``path`` (e.g. ``"unsupported type .png"``); ``""`` if it does not."""
    path = Path(path)
    generated = _generated(path)
    if generated:
        return f"generated file ({generated})"
    if _format_of(path) is not None:
        return ""
    suffix = path.suffix.lower()
    return f"unsupported type {suffix}" if suffix else "unsupported type (no extension)"


def load(path: Path, data: bytes) -> ParsedDocument:
    """Parse the bytes of the file at ``path`` (the path picks the format and the fallback title).

    Raises :class:`LoaderError` with a short reason when the file cannot be read as a document.
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt is None:
        raise LoaderError(unsupported_reason(path))
    stem = path.stem or path.name
    try:
        if fmt in ("pdf", "docx"):
            if not data.strip():
                raise LoaderError("empty file")
            if fmt == "pdf":
                from semsearch.loaders.pdf import parse_pdf

                return parse_pdf(data, stem)
            from semsearch.loaders.docx import parse_docx

            return parse_docx(data, stem)
        from semsearch.loaders.decode import decode

        text, encoding = decode(data)
        if fmt == "code":
            from semsearch.loaders.plain import parse_code

            return parse_code(text, path.name, encoding)
        return _parse_decoded(text, fmt, stem, encoding)
    except LoaderError:
        raise
    except Exception as error:  # a parser choking on a malformed file is a skip, not a crash
        raise LoaderError(f"unreadable {fmt}") from error


def parse_text(text: str, title: str = "", format: str = "text") -> ParsedDocument:
    """Parse text that does not come from a file (e.g. passed to ``add_texts``).

    ``format`` "markdown", "rst", "html" or "code" uses that format's parser; anything else splits
    paragraphs on blank lines like a plain-text file and keeps ``format`` as the label. An empty
    ``title`` is derived from the text (first short line), else ``"untitled"``. Raises
    :class:`LoaderError` ``"empty text"`` for text that is only whitespace.
    """
    from semsearch.loaders.decode import normalize_newlines

    text = normalize_newlines(text)
    if not text.strip():
        raise LoaderError("empty text")
    fallback = title or "untitled"
    if format == "code":
        from semsearch.loaders.plain import parse_code

        document = parse_code(text, fallback)
    else:
        document = _parse_decoded(text, format, fallback, None)
    if title and document.title != title:
        document = replace(document, title=title)
    return document


def _parse_decoded(text: str, fmt: str, fallback_title: str, encoding: str | None) -> ParsedDocument:
    if fmt == "markdown":
        from semsearch.loaders.markdown import parse_markdown

        return parse_markdown(text, fallback_title, encoding)
    if fmt == "rst":
        from semsearch.loaders.rst import parse_rst

        return parse_rst(text, fallback_title, encoding)
    if fmt == "html":
        from semsearch.loaders.html import parse_html

        return parse_html(text, fallback_title, encoding)
    from semsearch.loaders.plain import parse_plain

    return parse_plain(text, fallback_title, fmt or "text", encoding)


def _format_of(path: Path) -> str | None:
    if _generated(path):
        return None
    suffix = path.suffix.lower()
    fmt = _BY_SUFFIX.get(suffix)
    if fmt is not None:
        return fmt
    if path.name.lower() in _DOTFILES:
        return "code"
    # A well-known name, perhaps with a variant: "README", "LICENSE-MIT", "COPYING.LIB", "Dockerfile.dev".
    base = path.stem if suffix else _NAME_PREFIX.split(path.name, 1)[0]
    return _KNOWN_NAMES.get(base.upper())


def _generated(path: Path) -> str:
    """The kind of generated file ``path`` is (shown in the skip reason), or ``""``."""
    name = path.name.lower()
    if name.endswith(".lock"):
        return ".lock"
    if name.endswith(".min.js"):
        return ".min.js"
    if name.endswith(".min.css"):
        return ".min.css"
    if name in _LOCK_FILES:
        return name
    return ""
