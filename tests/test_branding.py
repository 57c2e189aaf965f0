"""Colour maths and logo checks of demo/site/branding.py (no Flask)."""
from __future__ import annotations

import re

import pytest

from demo.site import branding as b

# WCAG 2.x examples and well-known pairs
KNOWN = [
    ("#000000", "#ffffff", 21.0),
    ("#ffffff", "#ffffff", 1.0),
    ("#777777", "#ffffff", 4.48),     # the classic "just fails AA" grey
    ("#767676", "#ffffff", 4.54),     # the lightest grey that passes
    ("#0000ff", "#ffffff", 8.59),
    ("#ff0000", "#ffffff", 4.0),
]


@pytest.mark.parametrize("fg,bg,ratio", KNOWN)
def test_contrast_matches_known_ratios(fg, bg, ratio):
    assert b.contrast(fg, bg) == pytest.approx(ratio, abs=0.01)
    assert b.contrast(bg, fg) == pytest.approx(ratio, abs=0.01)   # symmetric


def test_luminance_ends_and_channel_weights():
    assert b.luminance("#000000") == 0
    assert b.luminance("#ffffff") == pytest.approx(1.0)
    # green weighs most, blue least (0.7152, 0.2126, 0.0722)
    assert b.luminance("#00ff00") > b.luminance("#ff0000") > b.luminance("#0000ff")
    assert b.luminance("#ff0000") == pytest.approx(0.2126)


@pytest.mark.parametrize("bad", ["", "red", "#fff", "#12345g", "0f6b6b6", None])
def test_parse_hex_refuses_what_is_not_rrggbb(bad):
    with pytest.raises(ValueError):
        b.parse_hex(bad)


def test_parse_and_format_round_trip():
    assert b.parse_hex("#0F6b6B") == (15, 107, 107)
    assert b.to_hex((15, 107, 107)) == "#0f6b6b"


@pytest.mark.parametrize("accent", ["#0b5cad", "#0f6b6b", "#1d6b35", "#000000", "#3e4c5e"])
def test_a_dark_enough_accent_is_kept_exactly(accent):
    assert b.contrast(accent, b.WHITE) >= b.AA
    assert b.darken_for(accent) == accent
    assert b.palette(accent).brand == accent


def test_an_accent_fine_on_white_but_not_on_the_canvas_is_darkened():
    accent = "#767676"                       # 4.54:1 on white, under 4.5:1 on the page canvas
    assert b.contrast(accent, b.WHITE) >= b.AA > b.contrast(accent, "#f4f6f9")
    brand = b.palette(accent).brand
    assert brand != accent
    assert all(b.contrast(brand, bg) >= b.AA for bg in b.LIGHT_BACKGROUNDS)


@pytest.mark.parametrize("accent", ["#ffd23f", "#ffffff", "#00ff00", "#ff6600", "#33aaff", "#ff0000", "#e0e0e0",
                                    "#777777"])
def test_a_light_accent_is_darkened_just_enough(accent):
    assert b.contrast(accent, b.WHITE) < b.AA
    brand = b.darken_for(accent)
    assert b.contrast(brand, b.WHITE) >= b.AA                # text on white and white text on it
    # just enough: right at the threshold, not darkened all the way (black would be 21:1)
    assert b.contrast(brand, b.WHITE) < b.AA + 0.15
    # the hue is kept: mixing with black scales the channels together
    r, g, bl = b.parse_hex(accent)
    r2, g2, b2 = b.parse_hex(brand)
    if max(r, g, bl) > 0:
        assert (r2, g2, b2) <= (r, g, bl)
        assert max(r2, g2, b2) > 0 or accent == "#000000"


def test_palette_pairs_all_pass_aa():
    for accent in ("#ffd23f", "#0f6b6b", "#a3245e", "#ffffff", "#00ffff"):
        p = b.palette(accent)
        assert p.accent == accent
        assert all(b.contrast(p.brand, bg) >= b.AA for bg in b.LIGHT_BACKGROUNDS)
        assert b.contrast(p.brand_ink, p.brand) >= b.AA
        assert b.contrast(p.text_on_tint, p.tint) >= b.AA
        assert b.contrast(b.INK, p.tint) >= b.AA


def test_stylesheet_carries_the_accent_exactly_and_adjusted_colours():
    css = b.stylesheet("#FFD23F")
    props = dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-f]{6});", css))
    assert props["--brand-accent"] == "#ffd23f"
    assert props["--brand"] != "#ffd23f"
    assert b.contrast(props["--brand"], "#ffffff") >= 4.5
    assert b.contrast(props["--brand-ink"], props["--brand"]) >= 4.5
    assert b.stylesheet(None).startswith("/*") and "--brand" not in b.stylesheet("")


# --- logo -------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
SAMPLES = {
    "image/png": PNG,
    "image/jpeg": b"\xff\xd8\xff\xe0" + b"\x00" * 40,
    "image/gif": b"GIF89a" + b"\x00" * 40,
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40,
    "image/svg+xml": b'<?xml version="1.0"?>\n<!-- logo -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
}


@pytest.mark.parametrize("mimetype", sorted(SAMPLES))
def test_sniff_by_content(mimetype):
    assert b.sniff_image(SAMPLES[mimetype]) == mimetype


@pytest.mark.parametrize("data", [
    b"", b"hello", b"<html><script>alert(1)</script></html>", b"%PDF-1.7",
    b'<!DOCTYPE svg [<!ENTITY x "y">]><svg xmlns="http://www.w3.org/2000/svg"/>',
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
])
def test_sniff_refuses_non_images(data):
    assert b.sniff_image(data) is None


def test_load_logo(tmp_path):
    good = tmp_path / "logo.bin"          # the name says nothing: the content decides
    good.write_bytes(PNG)
    assert b.load_logo(good) == b.Logo(PNG, "image/png")

    with pytest.raises(b.LogoError, match="not a file"):
        b.load_logo(tmp_path / "missing.png")
    text = tmp_path / "logo.png"
    text.write_text("not an image")
    with pytest.raises(b.LogoError, match="not a PNG"):
        b.load_logo(text)
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * b.LOGO_MAX_BYTES)
    with pytest.raises(b.LogoError, match="limit"):
        b.load_logo(big)
    with pytest.raises(b.LogoError, match="not a file"):
        b.load_logo(tmp_path)
