"""The review service in a real browser: two adjudicators decide a case under four eyes, with
the keyboard, and an auditor finds every step in the audit log and verifies its chain.

The service runs for real (uvicorn on a loopback port, a fresh SQLite database) and Debian's
headless Chromium drives its pages through Selenium (``browser_support``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

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
from tests.review_support import batch_payload

BATCH = "B-browser"
PROBE = "P00000"
CANDIDATES = ("GP00000-0", "GP00000-1")  # ranks 1 and 2, scores 0.970 and 0.960


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveService]:
    """The service with one imported case (a probe and two candidates, all with an image)."""
    with serving(tmp_path, BATCH, batch_payload(1, candidates_per_probe=2)) as service:
        yield service


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


# ---------------------------------------------------------------- helpers


def card(driver: webdriver.Chrome, heading: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'article.subject[aria-label="{heading}"]')


def judge_blind_then_decide(driver: webdriver.Chrome, case_id: str, key: str) -> str:
    """On a claimed case: the comparison with no score, the single-key judgement, then the
    scores and the decision. Returns the state the decision page reports."""
    on_page(driver, f"/cases/{case_id}")
    assert text_of(driver, "#case-state") == "in review"
    # Side by side: the probe and both candidates, every image really decoded.
    headings = [
        a.get_attribute("aria-label")
        for a in driver.find_elements(By.CSS_SELECTOR, "#comparison article.subject")
    ]
    assert headings == ["Probe", "Candidate 1", "Candidate 2"]
    assert sorted(images_loaded(driver)) == sorted(f"chip of {eid}" for eid in (PROBE, *CANDIDATES))
    probe = card(driver, "Probe")
    assert probe.find_element(By.CSS_SELECTOR, ".eid").text == PROBE
    fields = dict(
        zip(
            [t.text for t in probe.find_elements(By.TAG_NAME, "dt")],
            [d.text for d in probe.find_elements(By.TAG_NAME, "dd")],
            strict=True,
        )
    )
    assert fields["given name"] == "Ada"
    assert fields["family name"] == "Probe0"
    assert fields["captured"] == "2026-11-20 09:30 UTC"
    assert fields["centre"] == "C-01"
    for n, eid in enumerate(CANDIDATES, start=1):
        assert card(driver, f"Candidate {n}").find_element(By.CSS_SELECTOR, ".eid").text == eid
    # No score before the first judgement: not shown, not even in the page.
    assert driver.find_elements(By.CSS_SELECTOR, ".score") == []
    assert "0.970" not in driver.page_source and "0.960" not in driver.page_source
    assert "Scores are shown after you record your judgement" in text_of(driver, "main")
    assert text_of(driver, "#submit") == "Record judgement and show scores"

    # Nothing is chosen for them (a second reviewer does not see the first one's choice).
    choices = driver.find_elements(By.CSS_SELECTOR, '#judgement input[type="radio"]')
    assert len(choices) == 4 and not any(c.is_selected() for c in choices)
    # The first candidate's radio has the focus; a single key picks, Enter submits.
    wait(driver).until(
        lambda d: focused(d).get_attribute("type") == "radio", "no choice has the focus"
    )
    keys(driver, key)
    chosen = driver.find_element(By.CSS_SELECTOR, f'#judgement input[data-key="{key}"]')
    wait(driver).until(lambda _: chosen.is_selected(), f"key {key} did not pick a choice")
    assert chosen.get_attribute("value") == f"duplicate:{CANDIDATES[int(key) - 1]}"
    keys(driver, Keys.ENTER)

    # Back on the case with the scores shown and the blind choice kept.
    wait(driver).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".score")) == 2, "scores never appeared"
    )
    assert [s.text for s in driver.find_elements(By.CSS_SELECTOR, ".score")] == [
        "Score 0.970",
        "Score 0.960",
    ]
    assert text_of(driver, "#submit") == "Submit decision"
    assert text_of(driver, "#case-state") == "in review"
    kept = driver.find_element(By.CSS_SELECTOR, f'#judgement input[data-key="{key}"]')
    assert kept.is_selected()
    assert images_loaded(driver)

    # Enter again (the focus is on a choice) submits the decision.
    wait(driver).until(
        lambda d: focused(d).get_attribute("type") == "radio", "no choice has the focus"
    )
    keys(driver, Keys.ENTER)
    wait(driver).until(
        lambda d: d.find_elements(By.ID, "result"), "the decision page never appeared"
    )
    assert f"Your decision on case {case_id} is recorded" in text_of(driver, "#result")
    return text_of(driver, "#state")


def audit_rows(driver: webdriver.Chrome) -> list[tuple[str, str, str, str, str]]:
    """(who, action, object, outcome, details) of every row of the audit page's table."""
    rows = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#entries tbody tr"):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        assert len(cells) == 9, cells
        rows.append((cells[2], cells[4], cells[5], cells[7], cells[8]))
    return rows


# ---------------------------------------------------------------- the scenario


def test_two_adjudicators_decide_a_case_and_the_auditor_sees_every_step(
    live: LiveService, browser: webdriver.Chrome
) -> None:
    driver = browser

    # Ann, first review.
    log_in(driver, live, "ann", "/queue")
    assert text_of(driver, "#waiting") == "1"
    claim_with_enter(driver)
    on_page(driver, "/cases/")
    case_id = driver.current_url.rsplit("/", 1)[1]
    assert case_id
    state = judge_blind_then_decide(driver, case_id, "1")
    assert state == "awaiting second review"

    # Four eyes: the case she decided is not hers to review again.
    claim_with_enter(driver)
    on_page(driver, "/queue")
    wait(driver).until(lambda d: d.find_elements(By.ID, "empty"), "no empty-queue message")
    assert text_of(driver, "#empty") == "No case is waiting for you."

    # Bob, second review, in a fresh browser session.
    driver.delete_all_cookies()
    log_in(driver, live, "bob", "/queue")
    assert text_of(driver, "#waiting") == "1"
    claim_with_enter(driver)
    on_page(driver, f"/cases/{case_id}")
    state = judge_blind_then_decide(driver, case_id, "1")
    assert state == "decided duplicate"

    # Aude, auditor: every step is in the log, and the chain verifies.
    driver.delete_all_cookies()
    log_in(driver, live, "aude", "/audit")
    rows = audit_rows(driver)
    seen = {(who, action, target, outcome) for who, action, target, outcome, _ in rows}
    case = f"case:{case_id}"
    expected = {("operator", "batch.import", f"batch:{BATCH}", "ok")}
    for who in ("ann", "bob"):
        expected |= {
            (who, "login", f"user:{who}", "ok"),
            (who, "case.claim", case, "ok"),
            (who, "case.view", case, "ok"),
            (who, "case.blind_judgement", case, "ok"),
            (who, "case.judge", case, "ok"),
        }
        expected |= {(who, "image.view", f"image:{e}/chip", "ok") for e in (PROBE, *CANDIDATES)}
    expected.add(("aude", "login", "user:aude", "ok"))
    assert expected <= seen, sorted(expected - seen)
    judged = {who: details for who, action, _, _, details in rows if action == "case.judge"}
    for who, after in (("ann", "awaiting_second_review"), ("bob", "decided_duplicate")):
        assert "outcome=duplicate" in judged[who]
        assert f"duplicate_of={CANDIDATES[0]}" in judged[who]
        assert f"state={after}" in judged[who]
    assert not [r for r in rows if r[3] != "ok"], "an action was refused"

    driver.find_element(By.ID, "verify").click()
    on_page(driver, "/audit/verify")
    verdict = driver.find_element(By.ID, "verdict")
    assert "ok" in (verdict.get_attribute("class") or "").split(), verdict.text
    assert verdict.text.startswith("Verified:")
