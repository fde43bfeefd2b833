"""The console as an operator sees it in a real browser, on the embedded system: what each page shows after
something happened, and what its buttons do."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from contracts import Envelope
from contracts.enums import IntentType, Provider
from contracts.messages import Usage, UsageRecorded
from tests.console.conftest import ADMIN, SENDS_PER_S, USER, Stack, screenshot

WAIT_S = 10.0
FANS = 40  # at SENDS_PER_S, twenty seconds of sending: still under way when the page cancels it
SETTLE_S = 0.5  # the cancel reaches the of-sender over the bus; a send already on the wire may still land
QUIET_S = 2.0  # then four sending windows in which the platform must receive nothing
LOOKBACK_DAYS = 30  # the costs page's history (costs.js)
REFRESH_S = 2.0  # the list's live refresh (workflows.js)


def wait_for(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], object], what: str) -> None:
    # A page redraws its parts when it reloads them: an element found a moment ago may be gone, look again.
    redrawn = (StaleElementReferenceException, NoSuchElementException)
    WebDriverWait(driver, WAIT_S, ignored_exceptions=redrawn).until(condition, message=f"the page never showed {what}")


def find(driver: webdriver.Chrome, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def dialog_open(driver: webdriver.Chrome) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm').open"))


def open_page(driver: webdriver.Chrome, stack: Stack, page: str, token: str | None = None) -> None:
    """Opens the console through a login link (the token in the fragment), at `page`."""
    driver.get(f"{stack.url}/console#token={token or stack.admin}")
    wait_for(driver, lambda d: find(d, "#who").is_displayed(), "who is signed in")
    driver.get(f"{stack.url}/console#/{page}")
    wait_for(driver, lambda d: d.find_elements(By.ID, "page-title"), f"the {page} page")


def poll(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def usage_on(
    day: datetime, prompt_tokens: int, provider: Provider = Provider.OPENAI, model: str = "gpt-4o-mini"
) -> Envelope:
    """A priced call of `model` (gpt-4o-mini) by USER at noon of `day`, as a worker reports it."""
    payload = UsageRecorded(
        provider=provider,
        model=model,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=0, total_tokens=prompt_tokens),
        workflow_type=IntentType.MESSAGE_GENERATION,
        generation_id=uuid.uuid4(),
    )
    envelope = Envelope.new(payload, workflow_id=uuid.uuid4(), user_id=USER)
    return envelope.model_copy(update={"occurred_at": day.replace(hour=12, minute=0, second=0, microsecond=0)})


class TestConsole:
    def test_a_workflow_just_created_appears_in_the_list(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """The list refreshes by itself: a workflow started by a client shows up as a row, and the login
        link's token has left the address bar for the tab's session storage."""
        open_page(browser, stack, "workflows")
        assert "token=" not in browser.current_url
        assert browser.execute_script("return sessionStorage.getItem('ho.console.token')") == stack.admin
        code, answer = stack.call(
            "POST", "/api/v2/campaigns/hybrid", stack.user, {"type": "message_generation", "data": {"topic": "x"}}
        )
        assert code == 202, answer
        workflow_id = answer["data"]["workflowId"]
        row = f'tr[data-workflow-id="{workflow_id}"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), f"workflow {workflow_id}")
        assert "message_generation" in find(browser, row).text
        wait_for(browser, lambda d: "completed" in find(d, row).text, "the workflow completed")
        screenshot(browser, "workflows-new")

    def test_the_live_refresh_leaves_keyboard_focus_where_it_is(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """A person tabbing through the list keeps their place: the table is not redrawn under the focus, and
        is once the focus has left it."""
        open_page(browser, stack, "workflows")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#workflows a"), "a workflow link")
        link = find(browser, "#workflows a")
        link.send_keys(Keys.NULL)  # focus, as Tab would
        code, answer = stack.call("POST", "/api/v2/campaigns/hybrid", stack.user, {"type": "message_generation"})
        assert code == 202, answer
        time.sleep(REFRESH_S * 1.5)
        assert browser.switch_to.active_element == link
        assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-workflow-id="{answer["data"]["workflowId"]}"]')
        find(browser, "#filter-account").send_keys(Keys.NULL)  # focus leaves the table
        row = f'tr[data-workflow-id="{answer["data"]["workflowId"]}"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the new workflow after the focus left")

    def test_cancelling_from_the_page_stops_the_campaign(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """Cancel, confirmed in the dialog, ends a campaign that is sending: the platform receives nothing more."""
        before, delivered_before = stack.arrivals(), stack.delivered()
        fans = [f"fan-{i}" for i in range(FANS)]
        body = {"type": "message_generation", "sendToOnlyFans": True, "recipientIds": fans}
        code, answer = stack.call("POST", "/api/v2/campaigns/hybrid", stack.user, body)
        assert code == 202, answer
        workflow_id = answer["data"]["workflowId"]
        open_page(browser, stack, f"workflows/{workflow_id}")
        poll(lambda: stack.arrivals() >= before + SENDS_PER_S, "the campaign started sending")
        wait_for(browser, lambda d: find(d, "#cancel-workflow").is_displayed(), "the cancel button")
        find(browser, "#cancel-workflow").click()
        wait_for(browser, dialog_open, "the confirmation")
        screenshot(browser, "workflow-cancel")
        find(browser, "#confirm-ok").click()
        wait_for(browser, lambda d: find(d, "#workflow-status").text == "cancelled", "the workflow cancelled")
        time.sleep(SETTLE_S)
        received = stack.arrivals()
        time.sleep(QUIET_S)
        assert stack.arrivals() == received
        assert received - before < FANS
        code, status = stack.call("GET", f"/api/v2/campaigns/status?workflowId={workflow_id}", stack.user)
        assert code == 200, status
        sent = stack.delivered() - delivered_before
        assert status["data"]["progress"]["sent"] == sent
        wait_for(browser, lambda d: f"{sent} sent" in find(d, "#timeline").text, "the sent count")
        link = find(browser, "#workflow-detail a[href^='http://jaeger.test']")
        assert link.get_attribute("href") == f"http://jaeger.test:16686/trace/{answer['data']['traceId']}"
        screenshot(browser, "workflow")
        open_page(browser, stack, "workflows")  # the list, with the campaign's progress
        wait_for(browser, lambda d: "cancelled" in find(d, f'tr[data-workflow-id="{workflow_id}"]').text, "the row")
        screenshot(browser, "workflows")

    def test_the_cost_chart_has_one_point_per_day_of_history(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """Thirty days of history are thirty points, and the days with spend are the days something was billed."""
        today = datetime.now(UTC)
        spent = {3: 400_000, 4: 100_000, 6: 250_000, 9: 300_000, 13: 150_000, 20: 500_000}  # days ago → tokens
        for days_ago, tokens in spent.items():
            stack.run(stack.bus.publish(usage_on(today - timedelta(days=days_ago), tokens)))
        forecast: dict[str, object] = {}

        def recorded() -> bool:
            code, answer = stack.call("GET", f"/api/v2/costs/forecast?lookbackDays={LOOKBACK_DAYS}", stack.admin)
            assert code == 200, answer
            forecast.update(answer["data"])
            return sum(Decimal(str(d["cost"])) > 0 for d in answer["data"]["history"]) == len(spent)

        poll(recorded, "the cost-tracker recorded the usage")
        open_page(browser, stack, "costs")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#spend-chart circle.point"), "the chart")
        points = browser.find_elements(By.CSS_SELECTOR, "#spend-chart circle.point")
        dates = [point.get_attribute("data-date") for point in points]
        history = forecast["history"]
        assert isinstance(history, list)
        assert len(points) == len(history) == LOOKBACK_DAYS
        assert dates == [(today - timedelta(days=LOOKBACK_DAYS - i)).date().isoformat() for i in range(LOOKBACK_DAYS)]
        with_spend = {p.get_attribute("data-date") for p in points if float(p.get_attribute("data-cost") or 0) > 0}
        assert with_spend == {(today - timedelta(days=d)).date().isoformat() for d in spent}
        assert find(browser, "#spend-chart polygon.band").is_displayed()  # the forecast's interval
        screenshot(browser, "costs")

    def test_daily_spend_by_provider_and_model_has_one_line_each_with_a_point_per_day(
        self, stack: Stack, browser: webdriver.Chrome
    ) -> None:
        """Each provider, and each model billed, is one labelled line with a point per day since the page's
        start, and the days an azure gpt-4 call was seeded are its days with spend."""
        today = datetime.now(UTC)
        seeded = {2: 200_000, 5: 100_000, 11: 300_000}  # days ago → tokens of azure gpt-4
        for days_ago, tokens in seeded.items():
            stack.run(stack.bus.publish(usage_on(today - timedelta(days=days_ago), tokens, Provider.AZURE, "gpt-4")))
        since = (today - timedelta(days=LOOKBACK_DAYS)).date()
        days = [(since + timedelta(days=i)).isoformat() for i in range(LOOKBACK_DAYS + 1)]  # to today
        seeded_days = {(today - timedelta(days=d)).date().isoformat() for d in seeded}
        query = f"/api/v2/costs/breakdown?groupBy=day&splitBy=provider&from={since.isoformat()}"

        def recorded() -> bool:
            code, answer = stack.call("GET", query, stack.admin)
            assert code == 200, answer
            azure = {g["key"] for g in answer["data"]["groups"] if g["parts"][0]["cost"] > 0}
            return seeded_days <= azure

        poll(recorded, "the cost-tracker recorded the usage")
        open_page(browser, stack, "costs")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model-chart g.series"), "the daily charts")

        def line(chart: str, key: str) -> dict[str, float]:
            points = find(browser, f'#{chart} g.series[data-key="{key}"]').find_elements(By.CSS_SELECTOR, "circle")
            return {str(p.get_attribute("data-date")): float(p.get_attribute("data-cost") or 0) for p in points}

        lines = browser.find_elements(By.CSS_SELECTOR, "#provider-chart g.series")
        assert [g.get_attribute("data-key") for g in lines] == [p.value for p in Provider]
        for chart, key in (("provider-chart", "azure"), ("provider-chart", "openai"), ("model-chart", "gpt-4")):
            points = line(chart, key)
            assert list(points) == days, (chart, key)
        past = set(days[:-1])  # today's spend may also come from the other tests' workflows
        assert {day for day, cost in line("model-chart", "gpt-4").items() if cost > 0} & past == seeded_days
        assert {day for day, cost in line("provider-chart", "azure").items() if cost > 0} & past == seeded_days
        legend = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#provider-chart + ul.legend li")]
        assert [text.split(":")[0] for text in legend] == ["azure", "openai"]
        figures = find(browser, "#provider-chart ~ details")
        figures.find_element(By.TAG_NAME, "summary").send_keys(Keys.ENTER)  # the same figures, as a table
        headers = [th.text for th in figures.find_elements(By.CSS_SELECTOR, "thead th")]
        assert headers == ["Day", "azure", "openai"]
        rows = figures.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [row.find_element(By.TAG_NAME, "td").text for row in rows] == days
        screenshot(browser, "costs-daily")

    def test_an_alert_is_acknowledged_from_the_costs_page(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """Acknowledge on an open alert records who did, and the page then says so instead of the button."""
        body = {"message": "Campaign spend is above plan", "threshold": 20, "severity": "warning"}
        code, answer = stack.call("POST", "/api/v2/costs/alerts", stack.admin, body)
        assert code in (200, 201), answer
        alert_id = answer["data"]["id"]
        open_page(browser, stack, "costs")
        button = f'button[data-alert-id="{alert_id}"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, button), "the alert's Acknowledge")
        find(browser, button).click()
        wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, button), "the alert acknowledged")
        alerts = stack.call("GET", "/api/v2/costs/alerts", stack.admin)[1]["data"]["alerts"]
        assert [(a["acknowledged"], a["acknowledgedBy"]) for a in alerts if a["id"] == alert_id] == [(True, ADMIN)]
        assert f"acknowledged by {ADMIN}" in find(browser, "main").text

    def test_the_kill_switch_needs_a_confirmation(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """From the keyboard: Enter on the kill switch only asks; Escape keeps everything running; confirming
        stops new workflows (503 disabled) until it is switched back."""
        open_page(browser, stack, "admin")
        wait_for(browser, lambda d: d.find_elements(By.ID, "kill-switch"), "the kill switch")
        find(browser, "#kill-switch").send_keys(Keys.ENTER)
        wait_for(browser, dialog_open, "the confirmation")
        assert browser.switch_to.active_element.get_attribute("id") == "confirm-cancel"
        screenshot(browser, "admin-kill-switch")
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait_for(browser, lambda d: not dialog_open(d), "the dialog closed")
        assert stack.call("GET", "/api/admin/feature-flags", stack.admin)[1]["data"]["hybridOrchestratorEnabled"]
        wait_for(browser, lambda d: find(d, "#orchestrator-state").text == "running", "the orchestrator running")

        find(browser, "#kill-switch").click()
        wait_for(browser, dialog_open, "the confirmation")
        find(browser, "#confirm-ok").click()
        wait_for(browser, lambda d: find(d, "#orchestrator-state").text == "stopped", "the orchestrator stopped")
        assert not stack.call("GET", "/api/admin/feature-flags", stack.admin)[1]["data"]["hybridOrchestratorEnabled"]
        code, answer = stack.call("POST", "/api/v2/campaigns/hybrid", stack.user, {"type": "message_generation"})
        assert (code, answer["error"]["code"]) == (503, "disabled")

        find(browser, "#kill-switch").click()
        wait_for(browser, dialog_open, "the confirmation")
        find(browser, "#confirm-ok").click()
        wait_for(browser, lambda d: find(d, "#orchestrator-state").text == "running", "the orchestrator running")
        screenshot(browser, "admin")

    def test_the_delivery_page_shows_an_account_sending_and_pauses_it(
        self, stack: Stack, browser: webdriver.Chrome
    ) -> None:
        """A sending campaign's account is listed with its progress, next send, the window in use (full while
        it sends: 2 of 2 a second) and the next free slot; paused from its row, the page and the flags say
        paused; resumed, sending again."""
        fans = [f"fan-d{i}" for i in range(12)]
        body = {"type": "message_generation", "sendToOnlyFans": True, "recipientIds": fans}
        code, answer = stack.call("POST", "/api/v2/campaigns/hybrid", stack.user, body)
        assert code == 202, answer
        try:
            open_page(browser, stack, "delivery")
            row = "#sending-accounts tbody tr"
            wait_for(browser, lambda d: "of 12" in find(d, row).text, "the account sending")
            full = f"{SENDS_PER_S} of {SENDS_PER_S} in 1 s"
            shown: list[str] = []

            def window_full(driver: webdriver.Chrome) -> bool:
                # Read in one go: the row may be redrawn (the window no longer full) between two reads.
                shown[:] = [cell.text for cell in find(driver, row).find_elements(By.TAG_NAME, "td")]
                return shown[4] == full

            wait_for(browser, window_full, "the account's window in use")
            cells = shown
            assert cells[0] == USER and cells[1] == "1" and cells[6] == "sending"
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cells[3]), cells  # the next send
            assert cells[4] == full, cells
            # A full window's next free slot is a time to come (a free one's would say "now").
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cells[5]), cells
            find(browser, f'#sending-accounts button[data-account="{USER}"]').click()
            wait_for(browser, dialog_open, "the confirmation")
            find(browser, "#confirm-ok").click()
            wait_for(browser, lambda d: "paused" in find(d, row).text, "the account paused")
            assert stack.call("GET", "/api/admin/feature-flags", stack.admin)[1]["data"]["pausedAccounts"] == [USER]
            screenshot(browser, "delivery-paused")
            find(browser, f'#paused-accounts button[data-account="{USER}"]').click()
            wait_for(browser, lambda d: "sending" in find(d, row).text, "the account sending again")
            assert stack.call("GET", "/api/admin/feature-flags", stack.admin)[1]["data"]["pausedAccounts"] == []
        finally:
            stack.call("POST", f"/api/v2/campaigns/cancel?workflowId={answer['data']['workflowId']}", stack.admin)

    def test_an_account_is_paused_and_resumed_from_the_delivery_page(
        self, stack: Stack, browser: webdriver.Chrome
    ) -> None:
        """Pausing (confirmed) lists the account as paused, as the flags say; resuming takes it off."""
        open_page(browser, stack, "delivery")
        find(browser, "#pause-account").send_keys("creator-9")
        find(browser, "#pause-account").submit()
        wait_for(browser, dialog_open, "the confirmation")
        find(browser, "#confirm-ok").click()
        resume = 'button[data-account="creator-9"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, resume), "the paused account")
        assert stack.call("GET", "/api/admin/feature-flags", stack.admin)[1]["data"]["pausedAccounts"] == ["creator-9"]
        screenshot(browser, "delivery")
        find(browser, resume).click()
        wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, resume), "the account resumed")
        assert stack.call("GET", "/api/admin/feature-flags", stack.admin)[1]["data"]["pausedAccounts"] == []

    def test_a_refused_token_signs_out_and_a_pasted_one_signs_in(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """A token the gateway refuses (401) brings back the sign-in form, saying so; pasting a good one opens
        the page."""
        browser.get(f"{stack.url}/console#token=not-a-token")
        wait_for(browser, lambda d: find(d, "#sign-in").is_displayed(), "the sign-in form")
        wait_for(browser, lambda d: "Signed out" in find(d, "#status").text, "why")
        assert browser.execute_script("return sessionStorage.getItem('ho.console.token')") is None
        find(browser, "#token").send_keys(stack.user)
        find(browser, "#sign-in-form button").click()
        wait_for(browser, lambda d: find(d, "#who-name").text == USER, "the signed-in user")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#workflows, #workflow-results p"), "the list")

    def test_the_api_reference_is_served_offline(self, stack: Stack, browser: webdriver.Chrome) -> None:
        """Swagger UI renders every operation with its request example, loading nothing from another origin;
        the console's token of this tab is already in "Authorize"."""
        open_page(browser, stack, "workflows")
        browser.get(f"{stack.url}/api/docs#/campaigns/createHybridCampaign")
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 20, "the operations")
        wait_for(browser, lambda d: "weekend plans" in find(d, "#operations-campaigns-createHybridCampaign").text,
                 "the request example")  # fmt: skip
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button.authorize.locked"), "the token authorized")
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(stack.url + "/") for url in loaded), loaded
        screenshot(browser, "api-docs")

    def test_a_user_without_role_admin_is_refused_on_the_admin_page(
        self, stack: Stack, browser: webdriver.Chrome
    ) -> None:
        """A user's token opens the console, and the admin page says the gateway's refusal instead of flags."""
        open_page(browser, stack, "admin", token=stack.user)
        assert find(browser, "#who-name").text == USER
        wait_for(browser, lambda d: "admin" in find(d, "#status").text, "the refusal")
        assert not browser.find_elements(By.ID, "kill-switch")
