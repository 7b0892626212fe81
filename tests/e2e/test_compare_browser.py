"""The case page and the compare view in a real browser, in a laptop's window (1366 x 768).

The case has one probe and three candidate identities, the first with two captures (they
share an ``identity_id``). The case page shows that identity as one block holding both
captures. The compare view shows the probe beside one identity, each image at least 300 CSS
pixels high and both inside the viewport without scrolling; the arrow keys step through
identities and captures, "f" flickers the two chips in one frame and "o" overlays them, and
Enter goes back to the decision form with the capture on screen chosen. Every chip has its own
plain shade, so the pixels of a screenshot tell which one the browser really shows.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from dedup.adjudication import audit_store, database
from tests.e2e.browser_support import (
    LiveService,
    chromium,
    claim_with_enter,
    focused,
    images_loaded,
    keys,
    log_in,
    on_page,
    serving,
    text_of,
    wait,
)
from tests.review_support import (
    IDENTITY_CANDIDATES,
    IDENTITY_PROBE,
    IDENTITY_PROBE_SHADE,
    identity_batch_payload,
)

LAPTOP = (1366, 768)  # the window; the viewport inside it is smaller (measured, not assumed)
MIN_IMAGE_PX = 300
SHADE = {c: shade for c, _, _, _, shade in IDENTITY_CANDIDATES} | {
    IDENTITY_PROBE: IDENTITY_PROBE_SHADE
}
TOLERANCE = 6  # of a red channel, 0-255


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveService]:
    with serving(tmp_path, "B-identities", identity_batch_payload()) as service:
        yield service


@pytest.fixture
def laptop() -> Iterator[webdriver.Chrome]:
    with chromium(*LAPTOP) as driver:
        yield driver


# ---------------------------------------------------------------- measuring


FIT = """
const ids = arguments[0], min = arguments[1];
const problems = [];
if (window.scrollX !== 0 || window.scrollY !== 0) problems.push('the page is scrolled');
for (const id of ids) {
  const el = document.getElementById(id);
  if (!el) { problems.push(id + ' missing'); continue; }
  const r = el.getBoundingClientRect();
  if (r.top < 0 || r.left < 0 || r.bottom > window.innerHeight || r.right > window.innerWidth)
    problems.push(`${id} (${r.left},${r.top})-(${r.right},${r.bottom}) outside the viewport ` +
                  `${window.innerWidth}x${window.innerHeight}`);
  if (r.height < min) problems.push(`${id} only ${r.height}px high`);
  if (el.tagName === 'IMG' && !(el.complete && el.naturalWidth > 0))
    problems.push(id + ' not decoded');
}
return problems;
"""


def misfits(driver: webdriver.Chrome, *element_ids: str) -> list[str]:
    """Why the elements are not all fully inside the viewport, unscrolled, at least
    ``MIN_IMAGE_PX`` high and decoded (empty when they are)."""
    found = driver.execute_script(FIT, list(element_ids), MIN_IMAGE_PX)
    assert isinstance(found, list)
    return [str(p) for p in found]


def assert_fits(driver: webdriver.Chrome, *element_ids: str) -> None:
    wait(driver).until(lambda d: not misfits(d, *element_ids), "the images never fit")
    assert not misfits(driver, *element_ids)


def red_at_centre(driver: webdriver.Chrome, css: str) -> int:
    """The red channel at the centre of what the browser paints for the element."""
    shot = Image.open(io.BytesIO(driver.find_element(By.CSS_SELECTOR, css).screenshot_as_png))
    pixel = shot.convert("RGB").getpixel((shot.width // 2, shot.height // 2))
    assert isinstance(pixel, tuple)
    return int(pixel[0])


def near(value: int, expected: float) -> bool:
    return abs(value - expected) <= TOLERANCE


def frame_state(driver: webdriver.Chrome) -> tuple[Any, ...]:
    state = driver.execute_script(
        "const f = document.getElementById('frame');"
        "return [f.hidden, f.dataset.mode, f.dataset.showing, f.dataset.flips];"
    )
    assert isinstance(state, list)
    return tuple(state)


def flicker_reds(driver: webdriver.Chrome) -> dict[str, int]:
    """The frame's centre colour while it shows the probe and while it shows the candidate:
    each sampled in a screenshot taken between two reads of the same flip."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        before = frame_state(driver)
        red = red_at_centre(driver, "#frame .frame-box")
        if frame_state(driver) == before:
            seen.setdefault(str(before[2]), red)
    return seen


def shown_candidate(driver: webdriver.Chrome) -> tuple[str, str, str]:
    """(label, enrollment id, image source) of the candidate on screen."""
    image = driver.find_element(By.ID, "candidate-image")
    return (
        text_of(driver, "#candidate-label"),
        text_of(driver, "#candidate-id"),
        image.get_attribute("src") or "",
    )


def expect_candidate(driver: webdriver.Chrome, label: str, enrollment_id: str) -> None:
    wait(driver).until(
        lambda d: shown_candidate(d)[:2] == (label, enrollment_id),
        f"{label} ({enrollment_id}) never shown",
    )
    assert shown_candidate(driver)[2].endswith(f"/images/{enrollment_id}/chip")
    assert_fits(driver, "probe-image", "candidate-image")
    assert near(red_at_centre(driver, "#candidate-image"), SHADE[enrollment_id])
    assert near(red_at_centre(driver, "#probe-image"), IDENTITY_PROBE_SHADE)


# ---------------------------------------------------------------- the scenario


def test_identities_on_the_case_page_and_the_compare_view_on_a_laptop(
    live: LiveService, laptop: webdriver.Chrome
) -> None:
    driver = laptop
    log_in(driver, live, "ann", "/queue")
    claim_with_enter(driver)
    on_page(driver, "/cases/")
    case_id = driver.current_url.rsplit("/", 1)[1]

    # The case page: one block per identity, the two captures of I-A together, best first.
    blocks = driver.find_elements(By.CSS_SELECTOR, "#comparison section.identity")
    assert [b.get_attribute("data-identity") for b in blocks] == ["I-A", "G-B1", "G-C1"]
    captures = [
        [e.text for e in b.find_elements(By.CSS_SELECTOR, "article.subject .eid")] for b in blocks
    ]
    assert captures == [["G-A1", "G-A2"], ["G-B1"], ["G-C1"]]
    assert "2 captures of one person" in blocks[0].text
    assert sorted(images_loaded(driver)) == sorted(f"chip of {e}" for e in SHADE)
    assert driver.find_elements(By.CSS_SELECTOR, ".score") == []
    assert "0.950" not in driver.page_source and "0.930" not in driver.page_source
    # Each capture stays selectable; a key picks an identity's best capture.
    radios = driver.find_elements(By.CSS_SELECTOR, '#judgement input[type="radio"]')
    by_key = {r.get_attribute("data-key"): r.get_attribute("value") for r in radios}
    assert len(radios) == 6
    assert {k: v for k, v in by_key.items() if k} == {
        "1": "duplicate:G-A1",
        "2": "duplicate:G-B1",
        "3": "duplicate:G-C1",
        "0": "not_duplicate",
        "c": "cannot_decide",
    }
    assert "duplicate:G-A2" in {r.get_attribute("value") for r in radios}

    # "v" opens the compare view at the first identity's best capture.
    wait(driver).until(lambda d: focused(d).get_attribute("type") == "radio", "no focus")
    keys(driver, "v")
    on_page(driver, f"/cases/{case_id}/compare")
    assert IDENTITY_PROBE in text_of(driver, "#probe-pane figcaption")
    expect_candidate(driver, "Candidate 1, capture 1 of 2", "G-A1")
    assert text_of(driver, "#position") == "candidate 1 of 3"
    assert "0.950" not in driver.page_source and "score" not in text_of(driver, "#candidate-pane")
    sizes = driver.execute_script(
        "return [innerWidth, innerHeight,"
        " document.documentElement.scrollWidth, document.documentElement.scrollHeight];"
    )
    inner_w, inner_h, page_w, page_h = sizes
    assert inner_w == LAPTOP[0] and inner_h < LAPTOP[1]  # the viewport, not the window
    assert page_w <= inner_w and page_h <= inner_h, f"the view scrolls: {sizes}"

    # The measurement catches a layout too tall for the window (then the layout comes back).
    driver.execute_script(
        "document.getElementById('compare').style.setProperty('--big', arguments[0] + 'px');",
        inner_h,
    )
    assert any("outside the viewport" in p for p in misfits(driver, "candidate-image"))
    driver.execute_script("document.getElementById('compare').style.removeProperty('--big');")
    assert_fits(driver, "probe-image", "candidate-image")

    # Up and Down: the captures of the identity; Left and Right: the identities.
    keys(driver, Keys.ARROW_DOWN)
    expect_candidate(driver, "Candidate 1, capture 2 of 2", "G-A2")
    keys(driver, Keys.ARROW_UP)
    expect_candidate(driver, "Candidate 1, capture 1 of 2", "G-A1")
    keys(driver, Keys.ARROW_RIGHT)
    expect_candidate(driver, "Candidate 2", "G-B1")
    assert text_of(driver, "#position") == "candidate 2 of 3"
    keys(driver, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # the last identity, and no further
    expect_candidate(driver, "Candidate 3", "G-C1")
    keys(driver, Keys.ARROW_LEFT)
    expect_candidate(driver, "Candidate 2", "G-B1")

    # "f": the frame flickers between the probe's chip and the candidate's, beside the pair.
    assert frame_state(driver)[0] is True
    keys(driver, "f")
    wait(driver).until(lambda d: frame_state(d)[:2] == (False, "flicker"), "no flicker")
    assert_fits(driver, "probe-image", "candidate-image", "frame")
    reds = flicker_reds(driver)
    assert set(reds) == {"probe", "candidate"}, reds
    assert near(reds["probe"], IDENTITY_PROBE_SHADE), reds
    assert near(reds["candidate"], SHADE["G-B1"]), reds
    keys(driver, "f")  # again: it stops
    wait(driver).until(lambda d: frame_state(d)[0] is True, "the flicker did not stop")
    stopped = frame_state(driver)
    time.sleep(1.2)  # more than two flicker intervals
    assert frame_state(driver) == stopped

    # "o": the candidate over the probe at half opacity.
    keys(driver, "o")
    wait(driver).until(lambda d: frame_state(d)[:2] == (False, "overlay"), "no overlay")
    mixed = (SHADE["G-B1"] + IDENTITY_PROBE_SHADE) / 2
    # the overlay's images paint a moment after it opens (seen on a loaded machine: the dark
    # frame itself, 34, before the blend): wait for the blend, failing if it never shows
    wait(driver).until(
        lambda d: near(red_at_centre(d, "#frame .frame-box"), mixed), "the overlay never blended"
    )
    keys(driver, "o")
    wait(driver).until(lambda d: frame_state(d)[0] is True, "the overlay did not close")

    # Enter: back to the decision form with the candidate on screen chosen and focused; Enter
    # again records the blind judgement, and the scores show.
    keys(driver, Keys.ENTER)
    on_page(driver, f"/cases/{case_id}")
    chosen = driver.find_element(By.CSS_SELECTOR, 'input[value="duplicate:G-B1"]')
    assert chosen.is_selected()
    wait(driver).until(lambda d: focused(d).get_attribute("value") == "duplicate:G-B1", "focus")
    keys(driver, Keys.ENTER)
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".score"), "no scores")
    scores = [s.text for s in driver.find_elements(By.CSS_SELECTOR, ".score")]
    assert scores == ["Score 0.950", "Score 0.910", "Score 0.930", "Score 0.880"]

    # With the scores visible the compare view shows them; "v" opens it at the chosen capture.
    keys(driver, "v")
    on_page(driver, f"/cases/{case_id}/compare")
    expect_candidate(driver, "Candidate 2", "G-B1")
    assert text_of(driver, "#candidate-score") == "score 0.930"
    keys(driver, Keys.ESCAPE)
    on_page(driver, f"/cases/{case_id}")

    # Both views and every chip the browser fetched are in the audit log.
    with database.sessions(live.world.engine)() as db:
        entries = audit_store.search(db, actor="ann", limit=1000)
    views = [e for e in entries if e.action == "case.view" and e.target == f"case:{case_id}"]
    assert len(views) >= 5  # case, compare, case, case (scores shown), compare, case
    fetched = {e.target for e in entries if e.action == "image.view"}
    assert fetched == {f"image:{e}/chip" for e in SHADE}
