"""Alerts that reach a person: what a run found that needs someone, as one message, and which notifier sends it.

The notifier is any ``airflow.sdk.BaseNotifier`` named in the Airflow Variable ``kingfisher_archive_notifier``
(JSON: ``notifier``, its import path, and ``kwargs``, its arguments); the message is in its template context as
``kingfisher_archive_alert`` and the default of its usual message arguments. Without the Variable nothing is sent
and nothing fails. Plain Python: :mod:`kingfisher_archive.tasks` imports the class and calls it.
See docs/operating.md, Alerts.
"""

from __future__ import annotations

import html
import json

from kingfisher_archive import words
from kingfisher_archive.ledger import Status
from kingfisher_archive.settings import ConfigurationError

#: The Airflow Variable naming the notifier.
NOTIFIER = "kingfisher_archive_notifier"
#: The key of the template context under which a notifier finds the message.
CONTEXT_KEY = "kingfisher_archive_alert"
#: A notifier's message arguments that default to the alert, by argument name: "subject", or the body as HTML/text.
DEFAULT_ARGUMENTS = {
    "subject": "subject",
    "html_content": "html",
    "message": "text",
    "text": "text",
    "body": "text",
}


def parse_notifier(value: str | None) -> tuple[str, dict] | None:
    """``(class path, kwargs)`` from the Variable's JSON, ``None`` when it is unset; raise naming what is wrong."""
    if value is None or not str(value).strip():
        return None
    try:
        data = json.loads(value)
    except ValueError as e:
        raise ConfigurationError(f"Airflow Variable {NOTIFIER!r} is not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("notifier"), str) or "." not in data["notifier"]:
        raise ConfigurationError(
            f'Airflow Variable {NOTIFIER!r} must be a JSON object with "notifier", the import path of a '
            'BaseNotifier class (e.g. "airflow.providers.smtp.notifications.smtp.SmtpNotifier"), and "kwargs"'
        )
    kwargs = data.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigurationError(f'Airflow Variable {NOTIFIER!r}: "kwargs" must be a JSON object')
    return data["notifier"], kwargs


def with_defaults(kwargs: dict, template_fields) -> dict:
    """The notifier's arguments, its message arguments defaulting to the alert (rendered by the notifier itself)."""
    filled = dict(kwargs)
    for name, part in DEFAULT_ARGUMENTS.items():
        if name in template_fields and filled.get(name) is None:
            filled[name] = "{{ " + CONTEXT_KEY + "." + part + " }}"
    return filled


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    from urllib.parse import quote

    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def _alert(title: str, items: list[str], url: str) -> dict:
    text = "\n".join([f"{title}:", *(f"- {item}" for item in items), "", f"The run: {url}"])
    body = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return {
        "subject": title,
        "text": text,
        "html": (
            f"<p>{html.escape(title)}:</p><ul>{body}</ul>"
            f'<p>The run: <a href="{html.escape(url, quote=True)}">{html.escape(url)}</a></p>'
        ),
        "items": items,
        "url": url,
    }


def from_run(
    summary: dict | None,
    url: str,
    dag_id: str,
    run_id: str,
    failed_tasks: list[str] = (),
    error: str | None = None,
) -> dict | None:
    """One message for one archive run: what failed, what is held, what has waited too long; ``None`` if nothing.

    ``summary`` is the run's summary (``None`` when it could not be made: ``error`` says why); ``failed_tasks``
    the run's task instances that failed (``task_id`` or ``task_id[map_index]``).
    """
    items = []
    if error:
        items.append(f"The run failed: {error}")
    for task in failed_tasks:
        items.append(f"Task {task} failed: clear it once its cause is fixed (its log says what went wrong)")
    if summary is not None:
        for crawl_id in summary["failed"]:
            items.append(f"{crawl_id} was chosen but not archived: it stays on disk; clear its Archive crawl task")
        for row in summary["rows"]:
            if row["status"] == Status.HELD:
                said = words.why(row["status"], row["reason"], crawl_id=row["id"], detail=row.get("detail"))
                items.append(f"{row['id']} is held: {said}. What to do: {words.advice(row['reason'])}")
        items.extend(summary.get("warnings") or [])
    if not items:
        return None
    return _alert(f"Kingfisher Archive: {dag_id} run {run_id} needs attention", items, url)


def from_audit(report: dict, url: str, dag_id: str, run_id: str) -> dict | None:
    """One message for an audit run that found problems it did not repair (a broken month needs a person)."""
    items = [
        f"{p['key']}: {p['problem']}" + (f" ({p['detail']})" if p.get("detail") else "")
        for p in report["problems"]
        if not p["repaired"]
    ]
    if not items:
        return None
    return _alert(f"Kingfisher Archive: the audit ({dag_id} run {run_id}) found broken months", items, url)


def timed_out(dag_id: str, run_id: str, started: str | None, limit: str, last_task: str | None, url: str) -> dict:
    """The message of a run the scheduler failed because it had not finished ``limit`` after it started (the DAG's
    ``dagrun_timeout``); ``last_task`` is the unfinished task that started last, if Airflow says."""
    items = [
        f"Run {run_id} of {dag_id} started at {started or '?'} and had not finished after {limit}: Airflow failed it "
        "and skipped its unfinished tasks" + (f" (the last one started was {last_task})" if last_task else ""),
        "An Archive crawl task may have been waiting for another run's claim on its month (it says so in its log), "
        "or an upload may have been stuck: see the run's tasks and docs/operating.md. What it left half-done is "
        "finished or undone by the next run",
    ]
    return _alert(f"Kingfisher Archive: {dag_id} run {run_id} timed out", items, url)
