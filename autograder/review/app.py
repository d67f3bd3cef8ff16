"""`grader review`: a local, server-rendered web page for TAs (Starlette and Jinja2, no JavaScript).

The list of a task's submissions (failures first, counts per criterion), one page per submission with the
evidence, and POST forms to override, clear and regrade. Safety, because the evidence is student output:
every page is sent with a Content-Security-Policy that allows no script at all, the notebook is sanitised
(autograder.review.evidence), files are served by execution id of this task and a fixed name, forms carry a
CSRF token, and off the loopback address every request must carry the access token (a cookie after
`/?token=…`).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

import jinja2
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from autograder.config import Config
from autograder.errors import GradebookError, GraderError
from autograder.models import Execution
from autograder import similarity
from autograder.review import evidence, query

PACKAGE = Path(__file__).resolve().parent
TOKEN_COOKIE = "grader_review_token"
RAW_FILES = {"executed.ipynb": "application/x-ipynb+json", "execution.json": "application/json",
             "figures.json": "application/json", "facts.json": "application/json", "probe.json": "application/json"}
CSP = ("default-src 'none'; script-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class Review:
    """What every request handler needs: the course, its database, and the secrets of this server."""

    config: Config
    engine: Engine
    default_task: str | None
    token: str | None
    csrf: str
    regrade: Callable[[str, str], None] | None = None  # (task, participant); None: regrading is not offered

    @property
    def runs_root(self) -> Path:
        return self.config.path(self.config.paths.runs)


def create_app(config: Config, engine: Engine, default_task: str | None = None, token: str | None = None,
               regrade=None) -> Starlette:
    """The review application; `token` (if given) is required on every request."""
    review = Review(config, engine, default_task, token, secrets.token_urlsafe(32), regrade)
    templates = Jinja2Templates(env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined))
    pages = _Pages(review, templates)
    routes = [
        Route("/", pages.home),
        Route("/tasks/{task}", pages.listing),
        Route("/tasks/{task}/similarity", pages.similarity),
        Route("/tasks/{task}/participants/{participant}", pages.submission),
        Route("/tasks/{task}/participants/{participant}/override", pages.override, methods=["POST"]),
        Route("/tasks/{task}/participants/{participant}/regrade", pages.regrade, methods=["POST"]),
        Route("/tasks/{task}/executions/{execution:int}/figures/{index:int}.png", pages.figure),
        Route("/tasks/{task}/executions/{execution:int}/files/{name}", pages.raw_file),
        Mount("/static", StaticFiles(directory=PACKAGE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Guard, review=review)],
                     exception_handlers={GraderError: _not_found})


class _Guard(BaseHTTPMiddleware):
    """The access token (when one is set) and the security headers, on every response."""

    def __init__(self, app, review: Review) -> None:
        super().__init__(app)
        self.review = review

    async def dispatch(self, request: Request, call_next) -> Response:
        token = self.review.token
        if token is not None:
            offered = request.query_params.get("token")
            if offered is not None and hmac.compare_digest(offered.encode(), token.encode()):
                query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return _secured(response)
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            if not hmac.compare_digest(cookie.encode(), token.encode()):
                return _secured(PlainTextResponse("access token required: open the address printed by "
                                                  "`grader review` (…/?token=…)", status_code=403))
        return _secured(await call_next(request))


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


async def _not_found(request: Request, exc: GraderError) -> Response:
    """An unknown task or participant is a 404 with the grader's one line; a gradebook failure is ours (500)."""
    return PlainTextResponse(str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                             status_code=500 if isinstance(exc, GradebookError) else 404)


class _Pages:
    def __init__(self, review: Review, templates: Jinja2Templates) -> None:
        self.review = review
        self.templates = templates

    def _task(self, request: Request) -> str:
        task = request.path_params["task"]
        self.review.config.task(task)  # ConfigError (a GraderError) -> 404
        return task

    def _render(self, request: Request, name: str, status_code: int = 200, **context) -> Response:
        context.update(csrf=self.review.csrf, course=self.review.config.course.name,
                       tasks=list(self.review.config.tasks), regrade_offered=self.review.regrade is not None)
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    async def home(self, request: Request) -> Response:
        task = self.review.default_task or next(iter(self.review.config.tasks))
        return RedirectResponse(f"/tasks/{task}", status_code=303)

    def listing(self, request: Request) -> Response:
        task = self._task(request)
        verdict = request.query_params.get("verdict") or None
        criterion = request.query_params.get("criterion") or None
        results = query.current_results(self.review.engine, task)
        shown = query.failures_first(query.select_results(results, verdict=verdict, criterion=criterion))
        return self._render(
            request, "list.html", task=task, title=self.review.config.task(task).title, results=shown,
            total=len(results), counts=query.criterion_counts(results), verdict=verdict or "",
            criterion=criterion or "", seconds=query.run_seconds(self.review.engine, task),
            failed=query.failed_criteria, verdicts=("error", "fail", "pending", "pass"),
            first_failure=next((r.participant for r in shown if r.verdict != "pass"), None),
        )

    def submission(self, request: Request) -> Response:
        task = self._task(request)
        participant = request.path_params["participant"]
        view = query.submission_view(self.review.engine, self.review.runs_root, task, participant)
        executions = [self._evidence(task, execution) for execution in view.executions]
        return self._render(
            request, "submission.html", task=task, title=self.review.config.task(task).title, view=view,
            r=view.result, executions=executions, neighbours=self._neighbours(task, participant),
            notice=request.query_params.get("notice", ""),
        )

    def _evidence(self, task: str, execution: query.ExecutionView) -> dict:
        row = evidence.execution_of_task(self.review.engine, task, execution.id)
        return {
            "view": execution, "figures": [evidence.describe_figure(f) for f in execution.figures],
            "errors": evidence.notebook_errors(self.review.runs_root, row),
            "notebook": jinja2.utils.markupsafe.Markup(evidence.notebook_html(self.review.runs_root, row)),
            "files": [name for name in RAW_FILES if (execution.folder / name).is_file()],
        }

    def _neighbours(self, task: str, participant: str) -> dict:
        """The next and previous submission that did not pass, in the list's order (failures first)."""
        order = [r.participant for r in query.failures_first(query.current_results(self.review.engine, task))
                 if r.verdict != "pass"]
        if participant not in order:
            return {"next": order[0] if order else None, "previous": None}
        at = order.index(participant)
        return {"next": order[(at + 1) % len(order)] if len(order) > 1 else None,
                "previous": order[at - 1] if len(order) > 1 else None}

    async def override(self, request: Request) -> Response:
        task = self._task(request)
        participant = request.path_params["participant"]
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        decision, reason, author = (str(form.get(k, "")).strip() for k in ("verdict", "reason", "author"))
        if decision not in ("pass", "fail", "cleared") or not reason or not author:
            return PlainTextResponse("an override needs a verdict (pass, fail or cleared), a reason and an author",
                                     status_code=400)
        await _in_thread(_record_override, self.review, task, participant, decision, reason, author)
        what = "override cleared" if decision == "cleared" else f"verdict set to {decision}"
        return _back(task, participant, what)

    async def regrade(self, request: Request) -> Response:
        task = self._task(request)
        participant = request.path_params["participant"]
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        if self.review.regrade is None:
            return PlainTextResponse("regrading is not offered by this server", status_code=404)
        query.submission_view(self.review.engine, self.review.runs_root, task, participant)  # 404 if unknown
        await _in_thread(self.review.regrade, task, participant)
        return _back(task, participant, "graded again")

    async def _checked_form(self, request: Request):
        form = await request.form()
        offered = str(form.get("csrf", ""))
        if not hmac.compare_digest(offered.encode(), self.review.csrf.encode()):
            return PlainTextResponse("the form's CSRF token is missing or wrong: reload the page", status_code=403)
        return form

    async def similarity(self, request: Request) -> Response:
        """Pairs of submissions sharing code (issue 15's report): where TAs should look; no verdict changes."""
        task = self._task(request)
        try:
            threshold = float(request.query_params.get("threshold", similarity.DEFAULT_THRESHOLD))
        except ValueError:
            threshold = similarity.DEFAULT_THRESHOLD
        threshold = min(max(threshold, 0.01), 1.0)
        report = await _in_thread(similarity.find_similar, self.review.config, self.review.config.task(task),
                                  self.review.engine, threshold)
        return self._render(request, "similarity.html", task=task, title=self.review.config.task(task).title,
                            report=similarity.report_json(report))

    def figure(self, request: Request) -> Response:
        row = self._execution(request)
        png = evidence.figure_png(self.review.runs_root, row, request.path_params["index"]) if row else None
        if png is None:
            return PlainTextResponse("no such figure", status_code=404)
        return Response(png, media_type="image/png")

    def raw_file(self, request: Request) -> Response:
        row = self._execution(request)
        name = request.path_params["name"]
        if row is None or name not in RAW_FILES:
            return PlainTextResponse("no such file", status_code=404)
        path = query.run_folder(self.review.runs_root, row) / name
        if not path.is_file():
            return PlainTextResponse("no such file", status_code=404)
        return Response(path.read_bytes(), media_type=RAW_FILES[name],
                        headers={"Content-Disposition": f'attachment; filename="{row.id}-{name}"'})

    def _execution(self, request: Request) -> Execution | None:
        return evidence.execution_of_task(self.review.engine, self._task(request), request.path_params["execution"])


def _record_override(review: Review, task: str, participant: str, decision: str, reason: str, author: str) -> None:
    """As `grader override` does: the decision with its reason, then the gradebook mirror."""
    from autograder.record import gradebook_entries, record_override, sync_gradebook

    record_override(review.engine, task, participant, decision, reason, author)
    sync_gradebook(review.config.path(review.config.paths.nbgrader_course), task, gradebook_entries(review.engine, task))


async def _in_thread(function, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


def _back(task: str, participant: str, notice: str) -> Response:
    return RedirectResponse(f"/tasks/{task}/participants/{participant}?{urlencode({'notice': notice})}",
                            status_code=303)
