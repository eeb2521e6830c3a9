"""The sheet as a person sees it: rendered by a real browser (headless Chromium from Debian's
packages), looked at in a screenshot, and printed to PDF (one card per half A4 page)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_classroom import a_sheet

from labctl.classroom.sheet import render_html

CARD_HEADER = (0x1F, 0x4E, 0x79)
OVERVIEW_HEADER = (0x7A, 0x3E, 0x00)


def chromium() -> str:
    for name in ("chromium-headless-shell", "chromium"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is missing: ./install.sh --dev installs chromium-headless-shell")
    pytest.skip("headless Chromium is missing (./install.sh --dev installs chromium-headless-shell)")


def browse(html: Path, *args: str) -> None:
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args, html.as_uri()]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def bands(image: Image.Image, x: int, colour: tuple[int, int, int], min_rows: int = 20) -> list[tuple[int, int]]:
    """Runs of rows whose pixel at x has `colour` (a header), joined across text in them."""
    rgb = image.convert("RGB")
    rows = [y for y in range(rgb.height)
            if all(abs(a - b) <= 6 for a, b in zip(rgb.getpixel((x, y)), colour, strict=True))]
    runs: list[list[int]] = []
    for y in rows:
        if runs and y - runs[-1][1] <= 30:  # a line of white text splits a header
            runs[-1][1] = y
        else:
            runs.append([y, y])
    return [(a, b) for a, b in runs if b - a + 1 >= min_rows]


def test_screenshot_shows_one_card_per_seat_then_the_overview(tmp_path: Path) -> None:
    html = tmp_path / "sheet.html"
    html.write_text(render_html(a_sheet(3)))
    shot = tmp_path / "shot.png"
    browse(html, "--window-size=900,2600", f"--screenshot={shot}")
    image = Image.open(shot)
    cards = bands(image, 150, CARD_HEADER)
    overview = bands(image, 150, OVERVIEW_HEADER)
    assert len(cards) == 3, cards
    assert len(overview) == 1 and overview[0][0] > cards[-1][1], (overview, cards)
    # Cards are as tall as each other (half a page each) and do not overlap.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(cards)]
    assert max(gaps) - min(gaps) <= 20 and min(gaps) > 400, gaps
    # Something is written in each card: dark text pixels under each header.
    rgb = image.convert("L")
    for top, bottom in cards:
        strip = rgb.crop((20, bottom + 10, 600, bottom + 200))
        assert strip.getextrema()[0] < 60, (top, bottom)  # type: ignore[operator]


@pytest.mark.parametrize(("seats", "pages"), [(1, 2), (2, 2), (3, 3), (4, 3), (7, 5)])
def test_printed_two_cards_per_page_and_the_overview_on_its_own(tmp_path: Path, seats: int, pages: int) -> None:
    html = tmp_path / "sheet.html"
    html.write_text(render_html(a_sheet(seats)))
    pdf = tmp_path / "sheet.pdf"
    browse(html, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    count = len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf.read_bytes()))
    assert count == pages
