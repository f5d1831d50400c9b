"""Decoding any encoding Python knows, and repairing the bad characters that would end an XML read.

A streaming pre-pass between the bytes and expat: the document is decoded (BOM, else the XML declaration,
else UTF-8), every repair is logged as a warning, and expat is fed UTF-8. Repaired here:

- a byte that is not valid in the document's encoding (a stray Latin-1 byte in UTF-8): read as
  Windows-1252 / Latin-1;
- characters XML does not allow (C0 controls, U+FFFE, U+FFFF): dropped;
- an ``&`` that starts no XML reference (``?make=Ford&model=F-150``): kept as a literal ``&``;
- an HTML entity (``&nbsp;``, ``&eacute;``): read as its character.

CDATA sections are left as they are (an ``&`` there is already literal). Entity declarations are not
touched: expat still refuses them.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from html.entities import html5

from .types import InventoryRefused
from .values import ErrorLog

BYTES_HANDLER = "inventory-bad-bytes"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# XML 1.0 appendix F: "<?" in UTF-16 without a BOM.
_UTF16_WITHOUT_BOM = ((b"<\x00?\x00", "utf-16-le"), (b"\x00<\x00?", "utf-16-be"))
_DECLARED = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']\s*([A-Za-z0-9._:-]+)\s*["']""")
# Common wrong or unofficial names, and the WHATWG rule that Latin-1 and ASCII labels mean a superset.
_ALIASES = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf-8mb4": "utf-8",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "ascii": "utf-8",
    "us-ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "x-sjis": "shift_jis",
    "windows-31j": "cp932",
    "x-euc-jp": "euc_jp",
    "x-gbk": "gbk",
}
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_BAD_AMP = re.compile(
    r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});)(?:([A-Za-z][A-Za-z0-9]{0,31});)?"
)
_PARTIAL_REF = re.compile(r"[#A-Za-z0-9]{0,40}")
_CDATA = "<![CDATA["


def _escape_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    """Decoding error handler: each undecodable byte b becomes the lone surrogate U+DC00 + b (repaired later)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(BYTES_HANDLER, _escape_bad_bytes)


def bom_encoding(head: bytes) -> str | None:
    """The encoding a byte-order mark (or UTF-16 "<?" without one) gives, or None."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    for prefix, name in _UTF16_WITHOUT_BOM:
        if head.startswith(prefix):
            return name
    return None


def declared_encoding(head: bytes, *, warnings: ErrorLog) -> str:
    """The Python codec for the encoding the XML declaration names (UTF-8 when it names none).

    A wrong but common name is mapped (``utf8mb4`` is UTF-8); an unknown name of a document whose head is
    valid UTF-8 reads as UTF-8 with a warning. Raises InventoryRefused when the document cannot be decoded.
    """
    match = _DECLARED.match(head)
    if match is None:
        return "utf-8"
    name = match[1].decode("ascii")
    wanted = _ALIASES.get(name.lower(), name)
    try:
        info = codecs.lookup(wanted)
    except LookupError:
        if _is_utf8(head):
            warnings.add(f"unknown encoding {name!r} in the XML declaration: read as UTF-8")
            return "utf-8"
        raise InventoryRefused(f"unknown encoding {name!r} (and the document is not UTF-8)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise InventoryRefused(f"encoding {name!r} is not a text encoding")
    if info.name.startswith(("utf-16", "utf-32")):
        # No BOM and no UTF-16 "<?" (else bom_encoding had decided): the bytes are 8-bit.
        warnings.add(f"the XML declaration says {name!r} but the document is 8-bit: read as UTF-8")
        return "utf-8"
    return info.name


def _is_utf8(data: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def decode_stream(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    """Decode incrementally; undecodable bytes come out as lone surrogates U+DC00 + byte (see fix_chars)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors=BYTES_HANDLER)
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def recode_to_utf8(chunks: Iterable[bytes], encoding: str, *, warnings: ErrorLog) -> Iterator[bytes]:
    """The document transcoded to UTF-8 (its BOM dropped), bad bytes and characters repaired with warnings."""
    fixer = CharFixer(warnings)
    first = True
    for text in decode_stream(chunks, encoding):
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        yield fixer.fix(text).encode("utf-8")


class CharFixer:
    """Repairs undecodable bytes and characters XML forbids in a stream of decoded text, counting lines."""

    def __init__(self, warnings: ErrorLog) -> None:
        self.warnings = warnings
        self.line = 1

    def fix(self, text: str) -> str:
        if _BAD_CHARS.search(text) is None:
            self.line += text.count("\n")
            return text
        pieces: list[str] = []
        position = 0
        for match in _BAD_CHARS.finditer(text):
            self.line += text.count("\n", position, match.start())
            pieces.append(text[position : match.start()])
            position = match.end()
            pieces.append(self._replacement(match[0]))
        self.line += text.count("\n", position)
        pieces.append(text[position:])
        return "".join(pieces)

    def _replacement(self, char: str) -> str:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            byte = bytes([code - 0xDC00])
            try:
                fixed = byte.decode("cp1252")
            except UnicodeDecodeError:
                fixed = byte.decode("latin-1")
            if _BAD_CHARS.match(fixed) is None:
                self.warnings.add(f"line {self.line}: byte 0x{byte[0]:02X} is not valid here, read as {fixed!r}")
                return fixed
        self.warnings.add(f"line {self.line}: character U+{code:04X} is not allowed in XML, dropped")
        return ""


class XmlRepair:
    """Turns a stream of decoded XML text into UTF-8 bytes expat reads to the end (see the module doc)."""

    def __init__(self, warnings: ErrorLog) -> None:
        self.warnings = warnings
        self.chars = CharFixer(warnings)
        self.pending = ""
        self.in_cdata = False
        self.line = 1

    def feed(self, text: str, *, final: bool = False) -> bytes:
        self.pending += self.chars.fix(text)
        out: list[str] = []
        while True:
            if self.in_cdata:
                end = self.pending.find("]]>")
                if end < 0:
                    cut = len(self.pending) if final else max(len(self.pending) - 2, 0)
                    out.append(self._pass(self.pending[:cut]))
                    self.pending = self.pending[cut:]
                    break
                out.append(self._pass(self.pending[: end + 3]))
                self.pending = self.pending[end + 3 :]
                self.in_cdata = False
            else:
                start = self.pending.find(_CDATA)
                if start < 0:
                    cut = len(self.pending) if final else self._safe_cut(self.pending)
                    out.append(self._repair(self.pending[:cut]))
                    self.pending = self.pending[cut:]
                    break
                out.append(self._repair(self.pending[:start]))
                out.append(self._pass(_CDATA))
                self.pending = self.pending[start + len(_CDATA) :]
                self.in_cdata = True
        return "".join(out).encode("utf-8")

    def _pass(self, text: str) -> str:
        self.line += text.count("\n")
        return text

    @staticmethod
    def _safe_cut(text: str) -> int:
        """Where to stop so a reference or a "<![CDATA[" cut between two chunks is not judged half-read."""
        cut = len(text)
        amp = text.rfind("&", max(0, len(text) - 42))
        if amp >= 0 and _PARTIAL_REF.fullmatch(text, amp + 1):
            cut = amp
        lt = text.rfind("<", max(0, len(text) - len(_CDATA)))
        if lt >= 0 and _CDATA.startswith(text[lt:]):
            cut = min(cut, lt)
        return cut

    def _repair(self, text: str) -> str:
        if "&" not in text or _BAD_AMP.search(text) is None:
            return self._pass(text)
        pieces: list[str] = []
        position = 0
        for match in _BAD_AMP.finditer(text):
            self.line += text.count("\n", position, match.start())
            pieces.append(text[position : match.start()])
            position = match.end()
            pieces.append(self._fix_reference(match, text))
        self.line += text.count("\n", position)
        pieces.append(text[position:])
        return "".join(pieces)

    def _fix_reference(self, match: re.Match[str], text: str) -> str:
        name = match[1]
        if name is not None:
            char = html5.get(f"{name};")
            if char is not None:
                self.warnings.add(f"line {self.line}: HTML entity '&{name};' read as {char!r}")
                return "".join(f"&#{ord(c)};" for c in char)
            self.warnings.add(f"line {self.line}: unknown entity '&{name};' kept literally")
            return f"&amp;{name};"
        context = text[max(0, match.start() - 20) : match.start() + 20].strip()
        self.warnings.add(f"line {self.line}: raw '&' kept as a literal '&' ({context!r})")
        return "&amp;"


def repaired_xml(chunks: Iterable[bytes], encoding: str, *, warnings: ErrorLog) -> Iterator[bytes]:
    """The document as UTF-8 bytes that expat reads past bad characters (every repair a warning)."""
    repair = XmlRepair(warnings)
    for text in decode_stream(chunks, encoding):
        data = repair.feed(text)
        if data:
            yield data
    tail = repair.feed("", final=True)
    if tail:
        yield tail
