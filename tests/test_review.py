"""TA review: `grader show`, the `grader status` filters, and the `grader review` page in headless Chromium.

The submissions are real notebooks graded by the real sandbox (the sandboxcheck task: a notebook that prints
'fertig' passes). The page is served by uvicorn on a free loopback port and driven by Playwright over Debian's
chromium; the screenshots in docs/screenshots/ (shown in the README) are made here with
GRADER_UPDATE_SCREENSHOTS=1 (otherwise into the test's own folder: a test never writes into the repository,
which other tests compare before and after).
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS, make_workspace, moodle_zip, notebook

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

TASK = "sandboxcheck"
PASSES, SCATTER, HOSTILE = "4100001", "4100002", "4100003"
DOC_SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

SCATTER_NOTEBOOK = notebook(
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter([1, 2, 3, 4], [1, 4, 9, 16], c=["red", "red", "blue", "blue"])
    ax.set_title("Quadrate")
    ax.set_xlabel("x")
    ax.set_ylabel("x²")
    plt.show()
    """,
    "print('fast geschafft')",  # never prints the word the rubric wants
)

# Every way student output could try to run script in the TA's browser; each would set window.reviewPwned.
HOSTILE_NOTEBOOK = notebook(
    """
    from IPython.display import HTML, SVG, Javascript, display
    display(HTML("<script>window.reviewPwned = 'script'</script><b>fett</b>"))
    display(HTML('<img src="nothing.png" onerror="window.reviewPwned = \\'onerror\\'">'))
    display(HTML('<a id="jslink" href="javascript:window.reviewPwned=\\'link\\'">klick</a>'))
    display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
                '<script>window.reviewPwned = "svg"</script>'
                '<rect width="20" height="20" fill="green" onload="window.reviewPwned = \\'svgload\\'"/></svg>'))
    display(Javascript("window.reviewPwned = 'javascript'"))
    print("fertig")
    """,
)

WORKSHEET_HEADER = ('Identifier,"Full name","Email address",Status,Grade,Scale,"Grade can be changed",'
                    '"Last modified (submission)","Last modified (grade)","Feedback comments"')
SCALE = '"nicht erfolgreich bearbeitet   erfolgreich bearbeitet"'


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Three real submissions graded by the sandbox: one passes, one draws a scatter plot and fails, one is
    hostile HTML (and passes)."""
    root = tmp_path_factory.mktemp("review")
    workspace = make_workspace(root / "course", SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS)
    archive = moodle_zip(root / "m.zip", {
        PASSES: {"check.ipynb": notebook("print('fertig')")},
        SCATTER: {"check.ipynb": SCATTER_NOTEBOOK},
        HOSTILE: {"check.ipynb": HOSTILE_NOTEBOOK},
    })
    assert workspace.cli("import", TASK, archive).exit_code == 0
    result = workspace.cli("grade", TASK)
    assert result.exit_code == 0, result.output
    return workspace


@pytest.fixture(scope="module")
def server(course):
    """The review app as `grader review` builds it, served by uvicorn on a free loopback port."""
    app = _app(course)
    with _serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.slow(cost=90)
def test_a_ta_filters_opens_a_failure_sees_its_figure_and_overrides_it(course, server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{server}/")
    assert page.locator("#counts").inner_text().count("main.finished") == 1
    rows = page.locator("#submissions tbody tr")
    assert rows.first.get_attribute("data-participant") == SCATTER  # failures first
    screenshots = DOC_SCREENSHOTS if os.environ.get("GRADER_UPDATE_SCREENSHOTS") == "1" else tmp_path
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "review-list.png"), full_page=True)

    page.select_option("#criterion", "main.finished")
    page.click("#filter")
    assert [rows.nth(i).get_attribute("data-participant") for i in range(rows.count())] == [SCATTER]

    page.click(f"text={SCATTER}")
    message = page.locator("#criterion-main\\.finished .message").inner_text()
    assert message == "Das Notebook hat „fertig“ nicht ausgegeben."
    figure = page.locator(".figure img").first
    figure.scroll_into_view_if_needed()
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100")  # the PNG the notebook showed
    read = page.locator(".figure .read").first.inner_text()
    assert "Quadrate" in read and "scatter: 4 point(s)" in read and "#ff0000" in read and "#0000ff" in read
    page.screenshot(path=str(screenshots / "review-failed.png"), full_page=True)

    page.check("#override-form input[value=pass]")
    page.fill("#override-form textarea[name=reason]", "Ausgabe im Gespräch nachgewiesen")
    page.fill("#override-form input[name=author]", "tutor-anna")
    page.click("#override-form button")
    assert "verdict set to pass" in page.locator("#notice").inner_text()
    assert "override to pass by tutor-anna (replaced fail)" in page.locator("#history").inner_text()

    page.goto(f"{server}/tasks/{TASK}")
    row = page.locator(f"#submissions tr[data-participant='{SCATTER}']")
    assert "pass" in row.locator(".verdict").inner_text() and "override" in row.locator(".verdict").inner_text()

    status = course.status(TASK)[SCATTER]
    assert status["verdict"] == "pass" and status["automatic_verdict"] == "fail"
    assert status["override"]["author"] == "tutor-anna"
    worksheet = _worksheet(tmp_path / "Grades.csv", [PASSES, SCATTER, HOSTILE])
    out = tmp_path / "Upload.csv"
    assert course.cli("export", TASK, "--worksheet", worksheet, "--out", out).exit_code == 0
    grades = {row["Identifier"].split()[-1]: row for row in csv.DictReader(io.StringIO(out.read_text("utf-8-sig")))}
    assert grades[SCATTER]["Grade"] == "erfolgreich bearbeitet"
    assert "Ausgabe im Gespräch nachgewiesen" in grades[SCATTER]["Feedback comments"]

    page.goto(f"{server}/tasks/{TASK}/participants/{SCATTER}")
    page.fill("#clear-form input[name=reason]", "doch automatisch bewerten")
    page.fill("#clear-form input[name=author]", "tutor-anna")
    page.click("#clear-form button")
    assert course.status(TASK)[SCATTER]["verdict"] == "fail"


@pytest.mark.slow(cost=30)
def test_hostile_notebook_output_runs_no_script(course, server, browser):
    page = browser.new_page()
    violations = []
    page.on("console", lambda message: violations.append(message.text))
    response = page.goto(f"{server}/tasks/{TASK}/participants/{HOSTILE}")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    page.click("details.notebook summary")
    rendered = page.locator(".notebook-html")
    assert "fett" in rendered.inner_text() and "klick" in rendered.inner_text()
    assert rendered.locator("script").count() == 0 and rendered.locator("svg").count() == 0
    assert rendered.locator("img[src^='data:image/svg+xml']").count() == 1  # the SVG, shown as an image
    rendered.locator("a", has_text="klick").click()  # its javascript: href is gone
    time.sleep(0.5)
    assert page.evaluate("typeof window.reviewPwned") == "undefined"
    # The same outputs in a bare page (no sanitiser, no CSP) do run: the payload is live, the page disarms it.
    bare = browser.new_page()
    bare.set_content(_html_outputs(Path(_show(course, HOSTILE)["executions"][0]["executed_notebook"])))
    bare.wait_for_function("typeof window.reviewPwned !== 'undefined'", timeout=5000)
    live = "script, svg, iframe, object, embed, [onerror], [onload], [onclick], a[href^='javascript:']"
    assert page.evaluate(f"document.querySelectorAll({live!r}).length") == 0


def test_files_outside_the_task_s_run_folders_are_refused(course, server):
    execution = _show(course, SCATTER)["executions"][0]["id"]
    for path in (
        f"/tasks/{TASK}/executions/{execution}/files/..%2F..%2F..%2F..%2Fgrader.toml",
        f"/tasks/{TASK}/executions/{execution}/files/grader.db",
        f"/tasks/{TASK}/executions/99999/figures/0.png",
        f"/tasks/{TASK}/executions/{execution}/figures/7.png",
        "/static/..%2F..%2F..%2Fgrader.toml",
        "/static/../../cli.py",
        f"/tasks/othertask/executions/{execution}/figures/0.png",
    ):
        status, _, body = _get(server, path)
        assert status in (403, 404), (path, status)
        assert b"[course]" not in body and b"import" not in body
    status, headers, body = _get(server, f"/tasks/{TASK}/executions/{execution}/figures/0.png")
    assert status == 200 and body.startswith(b"\x89PNG") and headers["content-type"] == "image/png"
    status, _, body = _get(server, f"/tasks/{TASK}/executions/{execution}/files/figures.json")
    assert status == 200 and json.loads(body)[0]["axes"][0]["title"] == "Quadrate"


def test_forms_need_the_csrf_token_and_other_addresses_the_access_token(course, server):
    status, _, _ = _post(server, f"/tasks/{TASK}/participants/{PASSES}/override",
                         "verdict=fail&reason=x&author=mallory&csrf=guessed")
    assert status == 403
    assert course.status(TASK)[PASSES]["verdict"] == "pass"

    with _serving(_app(course, token="s3cret")) as base:
        assert _get(base, f"/tasks/{TASK}")[0] == 403
        status, headers, _ = _get(base, f"/tasks/{TASK}?token=s3cret&verdict=fail")
        assert status == 303 and headers["location"] == f"/tasks/{TASK}?verdict=fail"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        assert _get(base, f"/tasks/{TASK}", {"Cookie": cookie})[0] == 200
        assert _get(base, f"/tasks/{TASK}", {"Cookie": "grader_review_token=wrong"})[0] == 403

    refused = course.cli("review", TASK, "--host", "0.0.0.0")
    assert refused.exit_code == 9 and "give an access --token" in refused.output


@pytest.mark.slow(cost=40)
def test_show_status_filters_and_a_regrade_from_the_page(course, server, browser):
    shown = course.cli("show", TASK, SCATTER)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "[fail] main.finished" in text and "message: Das Notebook hat „fertig“ nicht ausgegeben." in text
    assert "exit: ok" in text and "executed.ipynb" in text and "figures.json (1 figure(s))" in text
    assert "limits: cgroup" in text and "history" in text
    data = _show(course, SCATTER)
    assert data["executions"][0]["executed_notebook"].endswith("executed.ipynb") and data["backend"]

    def participants(*options):
        result = course.cli("status", TASK, "--json", *options)
        assert result.exit_code == 0, result.output
        return sorted(row["participant"] for row in json.loads(result.stdout))

    assert participants("--verdict", "fail") == [SCATTER]
    assert participants("--criterion", "main.finished") == [SCATTER]
    assert participants("--verdict", "pass", "--final") == [PASSES, HOSTILE]
    assert participants("--provisional") == []
    table = " ".join(course.cli("status", TASK).output.split())
    assert "main.finished │ 2 │ 1 │ 0" in table
    rows = list(csv.DictReader(io.StringIO(course.cli("status", TASK, "--csv", "--verdict", "fail").stdout)))
    assert [(r["participant"], r["failed_criteria"]) for r in rows] == [(SCATTER, "main.finished")]
    typo = course.cli("status", TASK, "--criterion", "main.finishd")
    assert typo.exit_code == 9 and "no such criterion (known: main.executed, main.finished," in typo.output

    page = browser.new_page()
    page.goto(f"{server}/tasks/{TASK}/participants/{PASSES}")
    assert page.get_attribute("#next-failure", "accesskey") == "n"  # keyboard: the next failure
    assert page.get_attribute("#next-failure", "href").endswith(f"/participants/{SCATTER}")
    page.click("#regrade-form button")
    assert "graded again" in page.locator("#notice").inner_text()
    assert page.locator("#history tbody tr.run").count() == 2  # the first grading and this one


def _app(course, token=None):
    from autograder.models import open_database
    from autograder.review.app import create_app
    from autograder.review.regrade import regrader

    config = course.config()
    engine = open_database(config.database_url())
    return create_app(config, engine, default_task=TASK, token=token, regrade=regrader(config, engine))


class _serving:
    """uvicorn in a thread on a free port; the base URL while inside the block."""

    def __init__(self, app) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _get(base: str, path: str, headers: dict | None = None):
    return _request(base, "GET", path, None, headers or {})


def _post(base: str, path: str, form: str):
    return _request(base, "POST", path, form, {"Content-Type": "application/x-www-form-urlencoded"})


def _request(base: str, method: str, path: str, body, headers: dict):
    """A raw request: the path goes out exactly as written (no client-side normalising of '..')."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    connection.close()
    return result


def _show(course, participant: str) -> dict:
    result = course.cli("show", TASK, participant, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _html_outputs(executed: Path) -> str:
    """The notebook's HTML and SVG outputs, raw, as a browser would get them without the review page."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            for kind in ("text/html", "image/svg+xml"):
                value = output.get("data", {}).get(kind)
                parts.append("".join(value) if isinstance(value, list) else value or "")
    return "".join(parts)


def _worksheet(path: Path, participants: list[str]) -> Path:
    rows = [f'"Participant {p}","Person {p}",{p}@example.edu,"Submitted for grading",,{SCALE},Yes,'
            f'"Monday, 10 November 2026, 9:15 AM",-,' for p in participants]
    path.write_bytes(("\ufeff" + "\n".join([WORKSHEET_HEADER, *rows]) + "\n").encode("utf-8"))
    return path
