"""Zip member names decoded as the archive tools that wrote them meant them.

A zip entry's name is UTF-8 only when its "language encoding" flag (bit 11) is set. Windows Explorer and
older 7-Zip write names in the Windows OEM code page of the machine (cp866 on a Russian Windows, cp936 on a
Chinese one, cp850 in Western Europe); macOS's Archive Utility writes UTF-8 without setting the flag.
Python's `zipfile` decodes every unflagged name as CP437 (APPNOTE.TXT, appendix D), which turns
`кошка` into `¬«Φ¬á` and `café` (UTF-8) into `caf├⌐`. The server cannot know the uploader's code page, so
`decode_names` guesses it the way a reader would: the code page under which every name reads as words of
one script, with no box-drawing or symbol characters in it. charset-normalizer was tried first and picks
wrong on names this short (cp949 for Chinese, cp737 for Russian), hence this small scorer.
"""

from __future__ import annotations

import os
import unicodedata
import zipfile
from collections.abc import Iterable

UTF8_FLAG = 0x800
#: Windows OEM code pages, in the order ties are broken (CP437, the zip format's default, first).
OEM_CODE_PAGES = ("cp437", "cp850", "cp866", "gbk", "cp932", "cp949", "big5", "cp852", "cp857", "cp862", "cp737",
                  "cp874")  # fmt: skip
CODE_PAGE_LANGUAGES = {"cp437": "English (CP437)", "cp850": "Western European (CP850)", "cp866": "Cyrillic (CP866)",
                       "gbk": "Chinese, simplified (GBK)", "cp932": "Japanese (Shift JIS)", "cp949": "Korean (CP949)",
                       "big5": "Chinese, traditional (Big5)", "cp852": "Central European (CP852)",
                       "cp857": "Turkish (CP857)", "cp862": "Hebrew (CP862)", "cp737": "Greek (CP737)",
                       "cp874": "Thai (CP874)"}  # fmt: skip
_SCRIPT_GROUPS = {"CJK": "han", "HIRAGANA": "japanese", "KATAKANA": "japanese", "HANGUL": "hangul",
                  "CYRILLIC": "cyrillic", "GREEK": "greek", "HEBREW": "hebrew", "THAI": "thai", "LATIN": "latin"}  # fmt: skip


def raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name's bytes as stored in the zip (zipfile decoded unflagged names as CP437, which is lossless)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & UTF8_FLAG else "cp437")


def decode_names(members: Iterable[zipfile.ZipInfo], code_page: str | None = None) -> str | None:
    """Rename the members in place (`ZipInfo.filename`; reading them still works) to their intended names.

    Names flagged UTF-8 are kept (in NFC). Unflagged names are UTF-8 when all their bytes are valid UTF-8 (macOS),
    otherwise decoded with `code_page` when given, else with the one OEM code page that reads best for all
    of them together (Korean names may read as Chinese: pass "cp949" then). Returns the legacy code page
    used, or None when none was needed. LookupError for an unknown `code_page`.
    """
    if code_page is not None:
        "".encode(code_page)  # LookupError now, not after half the names
    legacy = []
    for info in members:
        if info.flag_bits & UTF8_FLAG:  # UTF-8 already, but maybe decomposed (macOS names zipped elsewhere)
            info.filename = _normalised(info.filename)
            continue
        raw = raw_name(info)
        if raw.isascii():
            continue
        try:
            info.filename = _normalised(raw.decode("utf-8"))
        except UnicodeDecodeError:
            legacy.append((info, raw))
    if not legacy:
        return None
    code_page = code_page or best_code_page([raw for _, raw in legacy])
    for info, raw in legacy:
        info.filename = _normalised(raw.decode(code_page, errors="replace"))
    return code_page


def best_code_page(names: list[bytes]) -> str:
    """The OEM code page under which `names` read most like words (lowest `oddity`); CP437 when in doubt."""
    scores = []
    for rank, code_page in enumerate(OEM_CODE_PAGES):
        try:
            decoded = [name.decode(code_page) for name in names]
        except UnicodeDecodeError:
            continue
        scores.append((sum(oddity(text, code_page) for text in decoded), rank, code_page))
    return min(scores)[2] if scores else "cp437"


def oddity(name: str, code_page: str = "") -> int:
    """How unlike a real file name a decoded name looks: 3 per symbol, box-drawing, half-width, lone jamo or
    control character, plus 2 per extra script mixed into one path component (Hangul and Han in one word is
    what a wrong East Asian code page gives; Han with kana is ordinary Japanese), plus 2 per character that
    GBK has but GB2312's common set lacks when `code_page` is GBK (Japanese and Big5 bytes read as GBK give
    rare characters), plus 1 per backslash in a name whose folders are separated by "/": a double-byte code
    page reads 0x5C after a lead byte as part of a character (Shift JIS "ソ" is 83 5C), which a single-byte
    one splits off as a stray separator."""
    score = name.count("\\") if "/" in name else 0  # "\\" beside "/" separators: a split character
    for part in name.replace("\\", "/").split("/"):
        scripts = set()
        for char in part:
            if char.isascii():
                continue
            category = unicodedata.category(char)
            if (category[0] in "SCZ" or category in ("No", "Pd", "Po", "Pi", "Pf") or "\uff61" <= char <= "\uff9f"
                    or "\u3130" <= char <= "\u318f"):
                score += 3
            elif code_page == "gbk" and not _in_gb2312(char):
                score += 2
            elif category[0] == "L":
                scripts.add(_SCRIPT_GROUPS.get(unicodedata.name(char, "?").split(" ")[0], "other"))
        if {"han", "japanese"} <= scripts:
            scripts.discard("han")
        score += 2 * max(0, len(scripts) - 1) + 2 * _latin_inside_letters(part)
    return score


def _latin_inside_letters(part: str) -> int:
    """How often an ASCII letter touches a letter of another alphabet within a word: a single-byte code page
    reads the second byte of a double-byte character as ASCII (Shift JIS "陽性" read as CP866 is "ЧzРл")."""
    return sum(a.isalpha() and b.isalpha() and a.isascii() != b.isascii() and not (_is_latin(a) and _is_latin(b))
               for a, b in zip(part, part[1:]))


def _is_latin(char: str) -> bool:
    return char.isascii() or unicodedata.name(char, "").startswith("LATIN")


def _in_gb2312(char: str) -> bool:
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def readable_name(name: str) -> str:
    """A file or folder name on disk as people read it and as one class: NFC (macOS writes decomposed accents,
    so `Ödem` typed on a Mac and on Windows must be one class), and bytes that are not UTF-8 (a Windows zip
    unpacked by Info-ZIP's unzip keeps its code page's bytes; Python hands them over as surrogate escapes) shown
    as escapes, `Caf\\xe9`: one name's code page cannot be guessed reliably, and two such names must stay two."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(name).decode("utf-8", errors="backslashreplace")
    return _normalised(name)


def _normalised(name: str) -> str:
    """NFC: macOS writes decomposed accents (e + U+0301); the same class must not appear twice."""
    return unicodedata.normalize("NFC", name)
