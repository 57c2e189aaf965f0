"""Branding for presenter mode, free of Flask: the accent colour as a stylesheet whose text and
button colours keep WCAG AA contrast, and the logo file checked by its content.

Colour maths follow WCAG 2.2: relative luminance of sRGB colours and the contrast ratio
(L1 + 0.05) / (L2 + 0.05). A colour that is too light for text on white, or for white text on
it, is darkened (mixed with black, which keeps its hue) just enough to reach 4.5:1, also on the
light page backgrounds of tokens.css (canvas, table heads, status washes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

AA = 4.5                      # WCAG AA for normal text
WHITE = "#ffffff"
INK = "#17202b"               # --c-ink in static/css/tokens.css
LOGO_MAX_BYTES = 512 * 1024   # a logo larger than this is refused
#: the light backgrounds brand-coloured text may sit on (static/css/tokens.css): white, canvas,
#: surface-2, code, and the ok/warn/error/info washes. --brand must read on every one of them.
LIGHT_BACKGROUNDS = ("#ffffff", "#f4f6f9", "#f8f9fb", "#f1f3f6", "#e7f4ec", "#fdf1df", "#fbeaea", "#e8f0fa")

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def parse_hex(value: str) -> tuple[int, int, int]:
    """``"#0f6b6b"`` as ``(15, 107, 107)``; ValueError for anything else."""
    m = _HEX.fullmatch((value or "").strip())
    if not m:
        raise ValueError(f"not a colour like #0f6b6b: {value!r}")
    h = m.group(1)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def to_hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{max(0, min(255, int(c))):02x}" for c in rgb)


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    r, g, b = (_linear(c) for c in parse_hex(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours, 1 to 21."""
    la, lb = luminance(a), luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def mix(colour: str, other: str, amount: float) -> str:
    """``colour`` moved ``amount`` (0..1) of the way towards ``other``, in sRGB."""
    a, b = parse_hex(colour), parse_hex(other)
    return to_hex(tuple(round(x + (y - x) * amount) for x, y in zip(a, b, strict=True)))


def darken_for(colour: str, against: str = WHITE, ratio: float = AA) -> str:
    """The lightest shade of ``colour`` (mixed with black) with at least ``ratio`` contrast
    against ``against``, which must be light; ``colour`` itself when it already has it."""
    colour = to_hex(parse_hex(colour))
    if contrast(colour, against) >= ratio:
        return colour
    # contrast against a light colour grows as the mix darkens: search the smallest step
    lo, hi = 0, 1000               # thousandths of black
    while lo < hi:
        mid = (lo + hi) // 2
        if contrast(mix(colour, "#000000", mid / 1000), against) >= ratio:
            hi = mid
        else:
            lo = mid + 1
    shade = mix(colour, "#000000", lo / 1000)
    while contrast(shade, against) < ratio:          # rounding to whole channels, to be sure
        shade = mix(shade, "#000000", 0.01)
    return shade


@dataclass(frozen=True)
class Palette:
    """The colours generated from one accent."""

    accent: str        # exactly as configured (decoration: the header stripe)
    brand: str         # buttons, links, focus: >= 4.5:1 on every light background, white text on it
    brand_ink: str     # text on ``brand``
    tint: str          # a light wash of the accent (backgrounds)
    text_on_tint: str  # ``brand`` darkened further if needed to read on ``tint``


def darkest(colours) -> str:
    return min(colours, key=luminance)


def palette(accent: str) -> Palette:
    accent = to_hex(parse_hex(accent))
    # AA on the darkest light background means AA on all of them, and for white text on it
    brand = darken_for(accent, darkest(LIGHT_BACKGROUNDS))
    tint = mix(accent, WHITE, 0.9)
    return Palette(accent=accent, brand=brand, brand_ink=WHITE, tint=tint,
                   text_on_tint=darken_for(brand, tint))


def stylesheet(accent: str | None) -> str:
    """The generated brand stylesheet: CSS custom properties that tokens.css and presenter.css
    read. Empty (a comment) without an accent, so the default palette stays."""
    if not accent:
        return "/* no brand accent configured: the default palette applies */\n"
    p = palette(accent)
    return (
        "/* Generated from brand_accent " + p.accent + ". --brand keeps WCAG AA (4.5:1) as text on white\n"
        f"   and the light page backgrounds, and for white text on it ({contrast(p.brand, WHITE):.2f}:1). */\n"
        ":root {\n"
        f"  --brand-accent: {p.accent};\n"
        f"  --brand: {p.brand};\n"
        f"  --brand-ink: {p.brand_ink};\n"
        f"  --brand-tint: {p.tint};\n"
        f"  --brand-on-tint: {p.text_on_tint};\n"
        "}\n"
    )


# --- the logo ---------------------------------------------------------------------------------

class LogoError(Exception):
    """Why a logo file cannot be served (said once in the log)."""


_SVG_ROOT = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<svg[\s>/]", re.DOTALL)


def sniff_image(data: bytes) -> str | None:
    """The image type by the file's first bytes (never its name): png, jpeg, gif, webp or
    svg+xml; None for anything else. An SVG with a DOCTYPE or entities is refused."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if _SVG_ROOT.match(data[:4096]) and b"<!DOCTYPE" not in data.upper() and b"<!ENTITY" not in data.upper():
        return "image/svg+xml"
    return None


@dataclass(frozen=True)
class Logo:
    data: bytes
    mimetype: str


def load_logo(path: Path, max_bytes: int = LOGO_MAX_BYTES) -> Logo:
    """The logo file, checked: LogoError saying why when it is missing, too large or not an image."""
    try:
        if not path.is_file():
            raise LogoError(f"brand_logo {path} is not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise LogoError(f"brand_logo {path} is {size} bytes; the limit is {max_bytes}")
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise LogoError(f"brand_logo {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise LogoError(f"brand_logo {path} is larger than {max_bytes} bytes")
    mimetype = sniff_image(data)
    if mimetype is None:
        raise LogoError(f"brand_logo {path} is not a PNG, JPEG, GIF, WebP or SVG image")
    return Logo(data, mimetype)
