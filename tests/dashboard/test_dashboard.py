"""The dashboard in headless Chromium against a real server with real executions."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("playwright", reason="needs Playwright for Python: pip install -e '.[dev]'")
from playwright.sync_api import Page, expect

from kitaru import build_compare_url_for_executions
from kitaru._backend import get_backend
from kitaru._runtime.failures import backend_failure
from kitaru._store import ExecutionStatus
from kitaru.client import KitaruClient
from kitaru.handle import FlowHandle
from tests.dashboard import _flows
from tests.dashboard.conftest import Dash, login, shot, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]


def _run_worker() -> None:
    from kitaru.worker import run_worker

    assert run_worker(once=True) == 1


def test_list_filters_and_live_update(dash: Dash, page: Page) -> None:
    done = _flows.adder.run(1)
    done.wait()
    failed = _flows.failing.run(2)
    with pytest.raises(Exception, match="boom"):
        failed.wait()
    login(page, dash)
    rows = page.locator("#executions tbody tr")
    expect(page.locator(f"tr[data-exec='{done.exec_id}']")).to_be_visible()
    expect(page.locator(f"tr[data-exec='{failed.exec_id}']")).to_contain_text("failed")

    page.get_by_label("Status").select_option("failed")
    expect(page.locator(f"tr[data-exec='{done.exec_id}']")).to_have_count(0)
    expect(page.locator(f"tr[data-exec='{failed.exec_id}']")).to_be_visible()
    assert all(s == "failed" for s in rows.evaluate_all("rs => rs.map(r => r.dataset.status)"))
    page.get_by_label("Status").select_option("")

    # Text search: an id prefix, then part of a flow name (any case).
    page.get_by_label("Search").fill(done.exec_id[:8])
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-exec", done.exec_id)
    page.get_by_label("Search").fill("FAIL")
    expect(page.locator(f"tr[data-exec='{failed.exec_id}']")).to_be_visible()
    expect(page.locator(f"tr[data-exec='{done.exec_id}']")).to_have_count(0)
    page.get_by_label("Flow").select_option("adder")  # flow filter and search combine
    expect(rows).to_have_count(0)
    page.get_by_label("Search").fill("")
    expect(page.locator(f"tr[data-exec='{done.exec_id}']")).to_be_visible()
    page.get_by_label("Flow").select_option("")

    # Live: a new execution, then its status change, show up without a reload.
    gated = _flows.reviewed.run(5)
    live_row = page.locator(f"tr[data-exec='{gated.exec_id}']")
    expect(live_row).to_be_visible()
    expect(live_row).to_have_attribute("data-status", "waiting")
    expect(live_row).to_contain_text("‖ review")
    shot(page, "executions")
    KitaruClient().executions.abort_wait(gated.exec_id, wait="review")
    expect(live_row).to_have_attribute("data-status", "failed")


def test_timeline_with_retries_cache_hits_and_fan_out(dash: Dash, page: Page) -> None:
    _flows.showcase.run(1).wait()
    second = _flows.showcase.run(2)
    second.wait()
    login(page, dash, hash_=f"#/executions/{second.exec_id}")
    timeline = page.locator("#timeline")
    expect(timeline.locator(".tl-row")).to_have_count(9)
    cached = timeline.locator(".tl-row[data-kind='cached']")
    expect(cached).to_have_count(1)
    expect(cached).to_have_attribute("data-name", "fetch")
    # Told apart without colour: a glyph and words in the label and accessible name.
    expect(cached).to_contain_text("◆ fetch")
    expect(cached).to_have_attribute("aria-label", re.compile("cached"))
    retried = timeline.locator(".tl-row[data-name='flaky']")
    expect(retried).to_have_attribute("data-attempts", "2")
    expect(retried).to_contain_text("↻2")
    expect(retried.locator(".tl-attempt")).to_have_count(2)
    expect(retried.locator(".tl-attempt.failed")).to_have_count(1)
    fan = timeline.locator(".tl-row[data-name='square']")
    expect(fan).to_have_count(4)
    # To scale: the bars sit where their calls ran, inside the track, in time order.
    lefts = timeline.locator(".tl-bar").evaluate_all(
        "bs => bs.map(b => b.getBoundingClientRect().left)"
    )
    assert lefts == sorted(lefts)
    shot(page, "execution")

    # Keyboard: a call is a button; Enter opens its detail.
    cached.focus()
    page.keyboard.press("Enter")
    detail = page.locator("#call-detail")
    expect(detail).to_contain_text("Call fetch")
    expect(detail).to_contain_text("content of https://example.invalid/doc")
    expect(detail.locator("pre.value").first).to_contain_text('"url": ')  # pretty JSON
    # Its inputs, by parameter name, previewed like outputs.
    inputs = detail.locator(".inputs")
    expect(inputs.locator(".artifact-value")).to_have_count(1)
    expect(inputs).to_contain_text("url")
    expect(inputs.locator("pre.value")).to_have_text("https://example.invalid/doc")
    retried.click()
    expect(detail.locator("table.attempts tbody tr")).to_have_count(2)
    expect(detail).to_contain_text("RuntimeError: transient failure 2")

    # HTML from the store is text: in the live log panel and in an output.
    logs = page.locator("#logs")
    expect(logs).to_contain_text("<script>alert('hi')</script> <b>bold?</b>")
    assert page.locator("#logs script, #logs b").count() == 0
    timeline.locator(".tl-row[data-name='shout']").click()
    expect(detail).to_contain_text("<img src=x onerror=alert(1)>hi")
    assert page.locator("#call-detail img").count() == 0
    shot(page, "call-detail")

    # Bytes: size and a download; pickles: marked, never loaded.
    timeline.locator(".tl-row[data-name='raw']").click()
    expect(detail).to_contain_text("Binary value, 8 B")
    with page.expect_download() as download:
        detail.get_by_role("button", name="Download (8 B)").click()
    assert Path(download.value.path()).read_bytes() == b"\x00\x01binary"
    timeline.locator(".tl-row[data-name='odd']").click()
    expect(detail).to_contain_text("Pickled (cloudpickle)")
    # A call without arguments says it has none.
    expect(detail.locator(".inputs")).to_contain_text("No arguments recorded")


def test_answer_a_wait_through_the_form(dash: Dash, page: Page) -> None:
    handle = _flows.reviewed.run(3)
    wait_status(handle.exec_id, "waiting")
    login(page, dash, hash_="#/waits")
    pending = page.locator(f"#pending-waits [data-exec='{handle.exec_id}']")
    expect(pending).to_contain_text("Ship <it>?")
    shot(page, "waits")
    pending.get_by_role("link").click()
    form = page.locator("#waits [data-wait='review']")
    expect(form.get_by_label("approved")).to_be_visible()
    form.get_by_label("approved").check()
    form.get_by_label("reviewer").fill("ana")
    # Left empty, score is left out: the error goes to the field that is missing.
    form.get_by_role("button", name="Submit answer").click()
    score_error = form.locator("[data-path='score'] .field-error")
    expect(score_error).to_contain_text("'score' is a required property")
    form.get_by_label("score").fill("1.5")  # not an integer: the server refuses it
    form.get_by_role("button", name="Add tags item").click()
    form.get_by_label("tags item 1").fill("urgent")
    form.get_by_role("button", name="Submit answer").click()
    expect(score_error).to_contain_text("is not of type 'integer'")
    expect(score_error).not_to_contain_text("required")  # a new answer clears old errors
    expect(form.locator("[role=alert]")).to_contain_text("KitaruWaitValidationError")
    shot(page, "wait-form-error")
    assert KitaruClient().executions.get(handle.exec_id).status.value == "waiting"

    form.get_by_label("score").fill("7")
    form.get_by_role("button", name="Submit answer").click()
    expect(page.locator("#action-status")).to_contain_text("Answer sent")
    assert handle.wait(timeout=30) == "9:True:ana:7"
    # The page follows the execution to its end.
    expect(page.locator(".title .badge").first).to_contain_text("completed")


def test_retry_a_failed_execution_from_its_page(dash: Dash, page: Page) -> None:
    handle = _flows.failing.run(4)
    with pytest.raises(Exception, match="boom"):
        handle.wait()
    login(page, dash, hash_=f"#/executions/{handle.exec_id}")
    failure = page.locator("#failure")
    expect(failure).to_contain_text("ValueError: boom 4")
    expect(failure.locator("pre.traceback")).to_contain_text("Traceback")
    shot(page, "failure")
    page.locator("[data-action='retry']").click()
    expect(page.locator("#action-status")).to_contain_text("now running")
    _run_worker()  # the server never runs flow code: a worker does
    expect(page.locator("dl.facts")).to_contain_text(re.compile(r"Runs\s*2"))
    expect(page.locator(".title .badge").first).to_contain_text("failed")


def test_replay_with_an_override_then_compare_and_delete(dash: Dash, page: Page) -> None:
    source = _flows.adder.run(3)
    assert source.wait() == 10
    login(page, dash, hash_=f"#/executions/{source.exec_id}")
    page.locator("[data-action='replay']").click()
    page.get_by_label("Replay from checkpoint").select_option("square")
    page.get_by_label("square", exact=True).fill("100")
    shot(page, "replay")
    page.get_by_role("button", name="Start replay").click()
    page.wait_for_url(re.compile(r"#/executions/(?!" + source.exec_id + ")"))
    new_id = page.url.rsplit("/", 1)[1]
    _run_worker()
    assert wait_status(new_id, "completed").status.value == "completed"
    expect(page.locator(".title .badge").first).to_contain_text("completed")
    expect(page.locator("dl.facts")).to_contain_text(source.exec_id[:8])

    page.locator("#compare-source").click()
    expect(page.locator("#relation")).to_contain_text("is a replay of")
    row = page.locator("#compare tr[data-name='square']")
    expect(row).to_contain_text("≠ differs")
    expect(row).to_contain_text("100")
    shot(page, "compare")

    # 0.21's link for three executions opens on the first two and offers the third.
    other = _flows.adder.run(4)
    other.wait()
    link = build_compare_url_for_executions(
        server_url=dash.url, flow_id="adder", exec_ids=[source.exec_id, new_id, other.exec_id]
    )
    assert link is not None
    page.goto(link)
    expect(page.locator("#compare-more")).to_contain_text(other.exec_id[:8])
    page.locator("#compare-more a").click()
    expect(page).to_have_url(re.compile(f"#/compare/{source.exec_id}/{other.exec_id}$"))
    expect(page.locator("#compare tr[data-name='square']")).to_contain_text("≠ differs")

    page.goto(f"{dash.url}/#/executions/{new_id}")
    page.locator("[data-action='delete']").click()
    page.locator("#cancel-delete").click()  # a second thought keeps it
    assert KitaruClient().executions.get(new_id).exec_id == new_id
    page.locator("[data-action='delete']").click()
    page.locator("#confirm-delete").click()
    page.wait_for_url(re.compile(r"#/executions$"))
    with pytest.raises(Exception, match="no execution"):
        KitaruClient().executions.get(new_id)


def test_read_only_key_sees_no_actions(dash: Dash, page: Page) -> None:
    failed = _flows.failing.run(9)
    with pytest.raises(Exception, match="boom"):
        failed.wait()
    waiting = _flows.reviewed.run(9)
    wait_status(waiting.exec_id, "waiting")
    login(page, dash, key=dash.read_key, hash_=f"#/executions/{failed.exec_id}")
    expect(page.locator("#failure")).to_be_visible()
    expect(page.locator("#actions")).to_have_count(0)
    expect(page.locator("[data-action]")).to_have_count(0)
    page.goto(f"{dash.url}/#/executions/{waiting.exec_id}")
    expect(page.locator("#waits")).to_contain_text("read-only")
    expect(page.get_by_role("button", name="Submit answer")).to_have_count(0)
    page.goto(f"{dash.url}/#/flows")
    expect(page.locator("tr[data-flow='failing']")).to_contain_text("%")
    shot(page, "flows")
    page.goto(f"{dash.url}/#/stacks")
    expect(page.locator("#stacks")).to_contain_text("local")
    shot(page, "stacks")
    # The key lives in this tab's sessionStorage, never in a URL; logging out drops it.
    assert dash.read_key not in page.url
    page.locator("#logout").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('kitaru.apiKey')") is None
    shot(page, "login")
    KitaruClient().executions.abort_wait(waiting.exec_id, wait="review")
    with pytest.raises(Exception, match="abort"):
        waiting.wait(timeout=30)


def test_logs_follow_a_running_execution(dash: Dash, page: Page) -> None:
    handle = _flows.chatty.run(1)
    wait_status(handle.exec_id, "running")
    login(page, dash, hash_=f"#/executions/{handle.exec_id}")
    logs = page.locator("#logs")
    expect(logs).to_contain_text("first line 1")
    expect(page.locator("#log-state")).to_contain_text("following")
    assert "later line" not in logs.inner_text()
    # Its runner holds it (a live lease): the server would refuse a resume.
    expect(page.locator("[data-action='cancel']")).to_be_visible()
    expect(page.locator("[data-action='resume']")).to_have_count(0)
    _flows.gate(1).set()  # printed after the page opened: it arrives on the open stream
    expect(logs).to_contain_text("later line 1")
    assert handle.wait(timeout=30) == "later line 1"
    expect(page.locator(".title .badge").first).to_contain_text("completed")
    expect(page.locator("#log-state")).to_contain_text("ended")


def test_cancel_and_abort_wait_buttons(dash: Dash, page: Page) -> None:
    to_cancel = _flows.reviewed.run(11)
    to_abort = _flows.reviewed.run(12)
    wait_status(to_cancel.exec_id, "waiting")
    wait_status(to_abort.exec_id, "waiting")
    login(page, dash, hash_=f"#/executions/{to_cancel.exec_id}")
    page.locator("[data-action='cancel']").click()
    expect(page.locator("#action-status")).to_contain_text("now cancelled")
    expect(page.locator(".title .badge").first).to_contain_text("cancelled")
    expect(page.locator("[data-action='cancel']")).to_have_count(0)
    assert KitaruClient().executions.get(to_cancel.exec_id).status.value == "cancelled"

    page.goto(f"{dash.url}/#/executions/{to_abort.exec_id}")
    form = page.locator("#waits [data-wait='review']")
    form.get_by_role("button", name="Abort wait").click()
    expect(page.locator("#action-status")).to_contain_text("Wait aborted")
    with pytest.raises(Exception, match="abort"):
        to_abort.wait(timeout=30)
    expect(page.locator(".title .badge").first).to_contain_text("failed")
    expect(page.locator("#waits [data-wait]")).to_have_count(0)
    with pytest.raises(Exception, match="cancel"):
        to_cancel.wait(timeout=30)


def test_resume_button_continues_a_released_execution(dash: Dash, page: Page) -> None:
    handle = _flows.parked.run(6)
    wait_status(handle.exec_id, "waiting")
    client = KitaruClient()
    client.executions.input(handle.exec_id, wait="go", resume=False)  # nobody runs it now
    login(page, dash, hash_=f"#/executions/{handle.exec_id}")
    expect(page.locator("#waits [data-wait]")).to_have_count(0)
    page.locator("[data-action='resume']").click()
    expect(page.locator("#action-status")).to_contain_text("resume: the execution is now")
    _run_worker()  # the server hands it off; a worker runs the flow code
    expect(page.locator(".title .badge").first).to_contain_text("completed")
    assert client.executions.get(handle.exec_id).status.value == "completed"


def test_executions_list_pages(dash: Dash, page: Page) -> None:
    ids = []
    for x in range(3):
        handle = _flows.square_flow.run(x)
        handle.wait()
        ids.append(handle.exec_id)
    login(page, dash, hash_="#/executions?flow=square_flow&limit=2")
    rows = page.locator("#executions tbody tr")
    newest_first = list(reversed(ids))
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.exec)") == newest_first[:2]
    expect(page.locator("#prev-page")).to_be_disabled()
    page.locator("#next-page").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-exec", newest_first[2])
    expect(page.locator("#next-page")).to_be_disabled()
    expect(page.locator("#list-info")).to_contain_text("Page 2")
    page.locator("#prev-page").click()
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-exec", newest_first[0])


def test_replay_from_a_later_call_of_a_repeated_checkpoint(dash: Dash, page: Page) -> None:
    source = _flows.repeated.run(21)
    assert source.wait() == [i * 10 for i in range(21)]
    login(page, dash, hash_=f"#/executions/{source.exec_id}/replay")
    # Every call is offered by its call id (what `at` takes), labelled by its number.
    at = page.get_by_label("Replay from checkpoint")
    expect(at.locator("option")).to_have_count(21)
    values = at.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert values == ["slow"] + [f"slow:{n}" for n in range(2, 22)]
    expect(at.locator("option[value='slow:3']")).to_have_text("slow (call 3)")
    at.select_option("slow:3")
    # One box for every call of the checkpoint, and one per call behind a disclosure.
    expect(page.get_by_label("slow (all 21 calls)")).to_be_visible()
    page.get_by_text("Override one call of slow").click()
    page.get_by_label("slow (call 5)", exact=True).fill("999")
    shot(page, "replay-repeated")
    page.get_by_role("button", name="Start replay").click()
    page.wait_for_url(re.compile(r"#/executions/(?!" + source.exec_id + ")"))
    new_id = page.url.rsplit("/", 1)[1]
    _run_worker()
    # Calls 1-2 are reused; from call 3 on they run again, but call 5 gives 999.
    expected = [i * 10 for i in range(21)]
    expected[4] = 999
    assert FlowHandle(new_id).wait(timeout=30) == expected
    expect(page.locator(".title .badge").first).to_contain_text("completed")
    before = page.locator("#timeline .tl-row[data-call='slow:2']")
    first_live = page.locator("#timeline .tl-row[data-call='slow:3']")
    expect(before).to_have_attribute("data-kind", "reused")
    expect(first_live).to_have_attribute("data-kind", "completed")


def test_wait_form_leaves_an_optional_model_unset(dash: Dash, page: Page) -> None:
    unset = _flows.deep_review.run(1)
    filled = _flows.deep_review.run(2)
    wait_status(unset.exec_id, "waiting")
    wait_status(filled.exec_id, "waiting")
    login(page, dash, hash_=f"#/executions/{unset.exec_id}")
    form = page.locator("#waits [data-wait='deep']")
    # inner: Optional[Note] = None starts unset, its fields hidden.
    expect(form.get_by_label("Set inner")).not_to_be_checked()
    expect(form.get_by_label("Reviewer")).to_be_hidden()
    form.get_by_role("button", name="Add Tags item").click()
    form.get_by_label("Tags item 1").fill("a")
    form.get_by_label("Level").select_option(label='"high"')
    shot(page, "wait-form-optional")
    form.get_by_role("button", name="Submit answer").click()
    expect(page.locator("#action-status")).to_contain_text("Answer sent")
    assert unset.wait(timeout=30) == "high:a:none"

    # Set, it is filled in like any nested model.
    page.goto(f"{dash.url}/#/executions/{filled.exec_id}")
    form = page.locator("#waits [data-wait='deep']")
    form.get_by_label("Set inner").check()
    form.get_by_label("Reviewer").fill("ana")
    form.get_by_label("Level").select_option(label='"low"')
    form.get_by_role("button", name="Submit answer").click()
    expect(page.locator("#action-status")).to_contain_text("Answer sent")
    assert filled.wait(timeout=30) == "low::ana:True"


def test_resume_is_offered_only_where_the_server_accepts_it(dash: Dash, page: Page) -> None:
    failed = _flows.failing.run(21)
    with pytest.raises(Exception, match="boom"):
        failed.wait()
    waiting = _flows.reviewed.run(21)
    wait_status(waiting.exec_id, "waiting")
    login(page, dash, hash_=f"#/executions/{failed.exec_id}")
    # A failure in the flow's code: retry it; resume is for a stop it can continue.
    expect(page.locator("[data-action='retry']")).to_be_visible()
    expect(page.locator("[data-action='resume']")).to_have_count(0)
    # Waiting for input: answer it; there is nothing to resume.
    page.goto(f"{dash.url}/#/executions/{waiting.exec_id}")
    expect(page.locator("#waits [data-wait='review']")).to_be_visible()
    expect(page.locator("[data-action='cancel']")).to_be_visible()
    expect(page.locator("[data-action='resume']")).to_have_count(0)

    # Stopped by a store failure, the failure is resumable: both are offered.
    store = get_backend().store
    assert store.finish_execution(
        failed.exec_id,
        status=ExecutionStatus.FAILED,
        failure=backend_failure(OSError("disk full"), checkpoint=None),
        only_if_status=[ExecutionStatus.FAILED],
    )
    page.goto(f"{dash.url}/#/executions/{failed.exec_id}")
    expect(page.locator("[data-action='retry']")).to_be_visible()
    page.locator("[data-action='resume']").click()
    expect(page.locator("#action-status")).to_contain_text("resume: the execution is now running")
    _run_worker()  # it fails again in boom()
    expect(page.locator(".title .badge").first).to_contain_text("failed")
    expect(page.locator("[data-action='resume']")).to_have_count(0)
    KitaruClient().executions.abort_wait(waiting.exec_id, wait="review")
    with pytest.raises(Exception, match="abort"):
        waiting.wait(timeout=30)


def test_raw_json_answer_errors_show_with_the_raw_editor(dash: Dash, page: Page) -> None:
    handle = _flows.reviewed.run(22)
    wait_status(handle.exec_id, "waiting")
    login(page, dash, hash_=f"#/executions/{handle.exec_id}")
    form = page.locator("#waits [data-wait='review']")
    form.get_by_label("reviewer").fill("ana")
    form.get_by_role("button", name="Edit as raw JSON").click()
    raw = form.locator(".raw")
    expect(form.get_by_label("reviewer")).to_be_hidden()  # the raw JSON is what is sent
    form.get_by_label("Answer as raw JSON").fill("{nope")
    form.get_by_role("button", name="Submit answer").click()
    expect(raw.locator("[role=alert]")).to_contain_text("Invalid JSON")
    form.get_by_label("Answer as raw JSON").fill(
        '{"approved": true, "reviewer": "bob", "score": "many"}'
    )
    form.get_by_role("button", name="Submit answer").click()
    expect(raw.locator("[role=alert]")).to_contain_text("KitaruWaitValidationError")
    expect(raw.locator(".field-error")).to_contain_text("score: 'many' is not of type 'integer'")
    expect(raw).not_to_contain_text("Invalid JSON")  # a new answer clears old errors
    # Nothing under the (hidden) form's fields, nor below the form.
    assert form.locator(".wait-form > .form-status [role=alert]").count() == 0
    assert all(not t for t in form.locator("[data-path] .field-error").all_inner_texts())
    shot(page, "wait-raw-error")
    form.get_by_label("Answer as raw JSON").fill(
        '{"approved": true, "reviewer": "bob", "score": 3}'
    )
    form.get_by_role("button", name="Submit answer").click()
    expect(page.locator("#action-status")).to_contain_text("Answer sent")
    assert handle.wait(timeout=30) == "484:True:bob:3"
