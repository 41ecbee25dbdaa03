"""The Airflow UI's catalogue page of the archive: an Airflow 3 plugin (``fastapi_apps`` and ``external_views``).

Installed with the wheel, Airflow finds it through the distribution's ``airflow.plugins`` entry point (pyproject.toml);
in a copied ``plugins/`` folder, through the top-level module ``kingfisher_archive_catalogue.py``, which imports it
(``.airflowignore`` hides the ``kingfisher_archive`` package itself from the plugin loader). It mounts a small FastAPI
app under ``/kingfisher-archive/`` in the API server and adds *Kingfisher Archive* to the UI's navigation, which
shows the page inside the Airflow UI:

- ``/kingfisher-archive/``: sources by month (archived, with the crawl, its size and compressed size, when it was
  archived and why it was kept; replaced; broken; empty), the crawls on disk that are waiting for Kingfisher
  Process, held or kept, and the totals per month. Paginated by source (``?page=``, :data:`PAGE_SIZE` sources);
- ``/kingfisher-archive/month/<source>/<YYYY>/<MM>``: a month's ``metadata.json``, the restore command, and the
  restore DAG's params;
- ``/kingfisher-archive/catalogue.json``: the whole catalogue as JSON.

Everything comes from :func:`kingfisher_archive.catalogue.catalogue` (what ``kingfisher-archive list`` prints),
read with the DAG's own Connection and Variables, cached for :data:`CACHE_SECONDS` (``?refresh=1`` reads again).
Every route requires what Airflow's own API requires to read the DAG ``kingfisher_archive``
(``requires_access_dag("GET")`` with the auth manager in use): without a valid token, a request is refused.
Nothing is read at import: no database, no bucket.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from urllib.parse import quote, urlencode

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.sdk.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse

logger = logging.getLogger(__name__)

DAG_ID = "kingfisher_archive"
RESTORE_DAG_ID = "kingfisher_archive_restore"
URL_PREFIX = "/kingfisher-archive"
#: How long a catalogue is served before the bucket is read again (seconds); ``?refresh=1`` reads it at once.
CACHE_SECONDS = float(os.environ.get("KINGFISHER_ARCHIVE_CATALOGUE_CACHE_SECONDS", "300"))
#: Sources per page of the grid.
PAGE_SIZE = 50

READ_DAG = [Depends(requires_access_dag(method="GET", param_dag_id=DAG_ID))]

_cache: dict[str, tuple[float, dict]] = {}
_lock = threading.Lock()
_metadata = None  # a catalogue.MetadataCache, made on first use


def _settings():
    from kingfisher_archive import tasks

    return tasks.load_settings(on_kingfisher_host=False)


def _waiting() -> list[dict]:
    """What the latest summary of the archive DAG found waiting for Kingfisher Process (best effort)."""
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            value = session.scalar(
                select(XComModel.value)
                .where(XComModel.dag_id == DAG_ID, XComModel.task_id == "summarise", XComModel.key == "return_value")
                .order_by(XComModel.timestamp.desc())
                .limit(1)
            )
        if isinstance(value, str | bytes):
            value = json.loads(value)
        return list((value or {}).get("waiting") or [])
    except Exception as e:
        logger.warning("Could not read the last summary's waiting crawls: %s", e)
        return []


def load(refresh: bool = False) -> dict:
    """The catalogue, from the cache when it is younger than :data:`CACHE_SECONDS`."""
    from kingfisher_archive import catalogue, tasks
    from kingfisher_archive.settings import ConfigurationError

    try:
        settings = _settings()
    except ConfigurationError as e:  # the page says what is missing, as the DAG's first task would
        raise HTTPException(503, f"The catalogue cannot read the bucket: {e}") from None
    with _lock:
        cached = _cache.get(settings.bucket)
        if cached and not refresh and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        rows, ledger_note = [], None
        if os.path.isfile(settings.ledger):
            try:
                rows = catalogue.read_ledger(settings.ledger)
            except Exception as e:
                ledger_note = f"the ledger {settings.ledger} cannot be read here ({e})"
        else:
            ledger_note = f"no ledger at {settings.ledger} on this host: held and kept crawls are not shown"
        global _metadata
        if _metadata is None:
            _metadata = catalogue.MetadataCache()
        found = catalogue.catalogue(
            tasks.s3_client(),
            settings.bucket,
            ledger_rows=rows,
            waiting=_waiting(),
            retention_days=settings.retention_days,
            cache=_metadata,
        )
        found["ledger_note"] = ledger_note
        _cache[settings.bucket] = (time.monotonic(), found)
        return found


# No /docs or /openapi.json: they would be served without the access check.
app = FastAPI(
    title="Kingfisher Archive catalogue", dependencies=READ_DAG, docs_url=None, redoc_url=None, openapi_url=None
)

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
td.cell { text-align: center; min-width: 1.6em; }
.archived { background: #c8e6c9; } .broken { background: #ffcdd2; } .replaced { background: #fff59d; }
.grid th.period { writing-mode: vertical-rl; font-weight: normal; font-size: 12px; }
.note { color: #666; }
"""


def _size(value) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )


def _cell(source_id: str, row: dict | None) -> str:
    if row is None:
        return "<td class='cell' title='empty'></td>"
    state = "replaced" if row["replaced"] and row["state"] != "broken" else row["state"]
    tip = (
        f"{row['data_version'] or '?'}: {_size(row['bytes'])}, {_size(row['compressed_bytes'])} compressed; "
        f"archived {row.get('archived_at') or '?'}; kept as {row['reason'] or '?'}"
        + (f"; replaced {', '.join(row['replaced'])}" if row["replaced"] else "")
        + (f"; PROBLEM: {row['problem']}" if row["problem"] else "")
    )
    mark = {"archived": "A", "replaced": "R", "broken": "!"}[state]
    href = f"{URL_PREFIX}/month/{quote(source_id)}/{row['year']:04d}/{row['month']:02d}"
    return f"<td class='cell {state}' title='{_e(tip)}'><a href='{href}'>{mark}</a></td>"


@app.get("/", response_class=HTMLResponse)
def catalogue_page(page: int = Query(1, ge=1), refresh: bool = False) -> HTMLResponse:
    found = load(refresh)
    sources = found["sources"]
    pages = max(1, -(-len(sources) // PAGE_SIZE))
    shown = sources[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    periods = found["periods"]
    parts = [
        f"<p>Bucket <b>{_e(found['bucket'])}</b>: {len(sources)} sources, "
        f"{sum(len(s['months']) for s in sources)} months, {_size(found['totals']['bytes_archived'])} archived as "
        f"{_size(found['totals']['compressed_bytes'])}, {_size(found['totals']['bytes_freed'])} freed on the "
        f"Kingfisher host. <span class='note'>Read at {_e(found['generated_at'])}, kept for {CACHE_SECONDS:.0f} s "
        f"(<a href='{URL_PREFIX}/?{urlencode({'page': page, 'refresh': 1})}'>read again</a>).</span></p>",
        "<p class='note'>A: archived; R: archived, replacing an earlier archive of the month; !: broken (see the "
        "month); empty: nothing archived. Hover a month for its crawl, sizes, date and reason; open it for its "
        "metadata.json and the restore command.</p>",
        "<h2>Sources by month</h2>",
        f"<p>Page {page} of {pages}: "
        + " ".join(
            f"<a href='{URL_PREFIX}/?page={n}'>{n}</a>" if n != page else f"<b>{n}</b>" for n in range(1, pages + 1)
        )
        + "</p>",
        "<table class='grid'><tr><th>source</th><th>bytes</th><th>compressed</th>"
        + "".join(f"<th class='period'>{_e(p)}</th>" for p in periods)
        + "</tr>",
    ]
    for source in shown:
        by_period = {row["period"]: row for row in source["months"]}
        parts.append(
            f"<tr><th>{_e(source['source_id'])}</th><td>{_size(source['bytes'])}</td>"
            f"<td>{_size(source['compressed_bytes'])}</td>"
            + "".join(_cell(source["source_id"], by_period.get(p)) for p in periods)
            + "</tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Archived months</h2>")
    parts.append(
        _table(
            ("source", "month", "crawl", "size", "compressed", "archived", "kept as", "replaced", "problem"),
            [
                (
                    source["source_id"],
                    row["period"],
                    row["data_version"] or "-",
                    _size(row["bytes"]),
                    _size(row["compressed_bytes"]),
                    row.get("archived_at") or "-",
                    row["reason"] or "-",
                    ", ".join(row["replaced"]),
                    row["problem"] or "",
                )
                for source in shown
                for row in source["months"]
            ],
            links=[
                f"{URL_PREFIX}/month/{quote(s['source_id'])}/{r['year']:04d}/{r['month']:02d}"
                for s in shown
                for r in s["months"]
            ],
        )
    )
    problems = [(s["source_id"], p) for s in shown for p in s["problems"]]
    if problems:
        parts.append("<h2>Problems</h2><ul>" + "".join(f"<li>{_e(s)} {_e(p)}</li>" for s, p in problems) + "</ul>")

    on_disk = found["on_disk"]
    parts.append("<h2>On the Kingfisher host</h2>")
    if found.get("ledger_note"):
        parts.append(f"<p class='note'>{_e(found['ledger_note'])}</p>")
    parts.append("<h3>Waiting for Kingfisher Process</h3>")
    parts.append(
        _table(
            ("crawl", "collection", "closed", "days waited", "files"),
            [(w["id"], w["collection_id"], w["since"], w["waited_days"], w["detail"]) for w in on_disk["waiting"]],
        )
    )
    parts.append("<h3>Held</h3>")
    parts.append(
        _table(
            ("crawl", "reason", "detail", "since", "what to do"),
            [(h["id"], h["reason"], h["detail"], h["since"], h["what_to_do"]) for h in on_disk["held"]],
        )
    )
    parts.append("<h3>Kept on disk (not archived)</h3>")
    parts.append(
        _table(
            ("crawl", "status", "reason", "size", "lost to", "swept from"),
            [
                (k["id"], k["status"], k["reason"], _size(k["bytes"]), k["lost_to"], k["swept_from"] or "never")
                for k in on_disk["kept"]
            ],
        )
    )
    parts.append("<h2>Totals by month</h2>")
    parts.append(
        _table(
            ("month", "archived", "compressed", "freed on the Kingfisher host"),
            [
                (m["month"], _size(m["bytes_archived"]), _size(m["compressed_bytes"]), _size(m["bytes_freed"]))
                for m in found["totals"]["by_month"]
            ],
        )
    )
    return _page("Kingfisher Archive catalogue", "".join(parts))


def _table(header, rows, links=None) -> str:
    """A table; with ``links``, each row's second cell links to the URL of the same index."""
    if not rows:
        return "<p class='note'>None.</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cells = [f"<td>{_e(c)}</td>" for c in row]
        if links:
            cells[1] = f"<td><a href='{_e(links[index])}'>{_e(row[1])}</a></td>"
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


@app.get("/catalogue.json")
def catalogue_json(refresh: bool = False) -> JSONResponse:
    return JSONResponse(load(refresh))


@app.get("/month/{source_id}/{year}/{month}", response_class=HTMLResponse)
def month_page(source_id: str, year: int, month: int) -> HTMLResponse:
    found = load()
    rows = [
        row
        for source in found["sources"]
        if source["source_id"] == source_id
        for row in source["months"]
        if (row["year"], row["month"]) == (year, month)
    ]
    if not rows:
        raise HTTPException(404, f"{source_id} has no archive of {year:04d}-{month:02d} in {found['bucket']}")
    from kingfisher_archive import tasks

    settings = _settings()
    client = tasks.s3_client()
    parts = []
    for row in rows:
        try:
            body = client.get_object(Bucket=settings.bucket, Key=row["prefix"] + "metadata.json")["Body"].read()
            metadata = json.dumps(json.loads(body), indent=2)
        except Exception as e:
            metadata = f"(metadata.json cannot be read: {e})"
        # Relative to the Variable kingfisher_archive_restore_directory, the only directory the DAG writes under.
        params = {**row["restore_params"], "target_directory": "restored"}
        parts.append(
            f"<h2>{_e(row['prefix'])}</h2>"
            + (f"<p><b>Problem:</b> {_e(row['problem'])}</p>" if row["problem"] else "")
            + (
                f"<p>Replaced earlier archives of the month: {_e(', '.join(row['replaced']))}</p>"
                if row["replaced"]
                else ""
            )
            + f"<h3>metadata.json</h3><pre>{_e(metadata)}</pre>"
            f"<h3>Restore it</h3><p>From the Kingfisher host's shell:</p><pre>{_e(row['restore_command'])}</pre>"
            f"<p>Or trigger the DAG <a href='/dags/{RESTORE_DAG_ID}' target='_top'>{RESTORE_DAG_ID}</a> with these "
            "params (<code>target_directory</code> is relative to the Variable "
            "<code>kingfisher_archive_restore_directory</code>):</p>"
            f"<pre>{_e(json.dumps(params, indent=2))}</pre>"
        )
    parts.append(f"<p><a href='{URL_PREFIX}/'>Back to the catalogue</a></p>")
    return _page(f"{source_id} {year:04d}-{month:02d}", "".join(parts))


class KingfisherArchiveCatalogue(AirflowPlugin):
    name = "kingfisher_archive_catalogue"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Kingfisher Archive catalogue"}]
    external_views = [
        {
            "name": "Kingfisher Archive",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "kingfisher-archive",
        }
    ]
