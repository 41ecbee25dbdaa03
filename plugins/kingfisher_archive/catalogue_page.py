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
import re
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
        from kingfisher_archive.ledger import read_state

        state: dict = {"crawls": [], "waiting": None, "last_run": None}
        ledger_note = None
        if os.path.isfile(settings.ledger):
            try:
                state = read_state(settings.ledger)
            except Exception as e:
                ledger_note = f"the ledger {settings.ledger} cannot be read here ({e})"
        else:
            ledger_note = (
                f"no ledger at {settings.ledger} on this host: held and kept crawls, and the last run's failures, "
                "are not shown"
            )
        global _metadata
        if _metadata is None:
            _metadata = catalogue.MetadataCache()
        found = catalogue.catalogue(
            tasks.s3_client(),
            settings.bucket,
            ledger_rows=state["crawls"],
            # The ledger's (as `kingfisher-archive list` reads them); without one here, the last summary's.
            waiting=state["waiting"] if state["waiting"] is not None else _waiting(),
            retention_days=settings.retention_days,
            waiting_warning_days=settings.waiting_warning_days,
            last_run=state["last_run"],
            cache=_metadata,
            prices=settings.prices,
        )
        found["ledger_note"] = ledger_note
        _cache[settings.bucket] = (time.monotonic(), found)
        return found


# No /docs or /openapi.json: they would be served without the access check.
app = FastAPI(
    title="Kingfisher Archive catalogue", dependencies=READ_DAG, docs_url=None, redoc_url=None, openapi_url=None
)

STYLE = """
:root { color-scheme: light; --fg: #1a202c; --muted: #4a5568; --bg: #ffffff; --line: #e2e8f0; --head: #f7fafc;
  --link: #2b6cb0; --archived: #c6f6d5; --replaced: #fefcbf; --broken: #fed7d7; --warn-bg: #fffaf0;
  --warn-line: #dd6b20; --ok-bg: #f0fff4; --ok-line: #38a169; --stripe: #f7fafc; }
html.dark { color-scheme: dark; --fg: #e2e8f0; --muted: #a0aec0; --bg: #1a202c; --line: #2d3748; --head: #2d3748;
  --link: #90cdf4; --archived: #22543d; --replaced: #744210; --broken: #742a2a; --warn-bg: #3b2a1a;
  --warn-line: #f6ad55; --ok-bg: #1c3a2c; --ok-line: #68d391; --stripe: #202736; }
body { font-family: Inter, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px;
  margin: 16px 24px; color: var(--fg); background: var(--bg); line-height: 1.45; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 24px 0 8px; } h3 { font-size: 15px; }
a { color: var(--link); }
table { border-collapse: collapse; margin-bottom: 16px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; position: sticky; top: 0; }
tbody tr:nth-child(even) td { background: var(--stripe); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; white-space: nowrap; }
td.date { white-space: nowrap; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; white-space: nowrap; }
td.why { max-width: 46em; }
td.cell { text-align: center; min-width: 1.6em; padding: 2px 4px; }
.grid th.period { writing-mode: vertical-rl; font-weight: normal; font-size: 12px; }
/* td.cell: above the stripes of every other row, which would hide a month's colour. */
td.cell.archived { background: var(--archived); } td.cell.broken { background: var(--broken); }
td.cell.replaced { background: var(--replaced); }
.note { color: var(--muted); }
.attention { border-left: 4px solid var(--warn-line); background: var(--warn-bg); padding: 8px 16px;
  margin: 12px 0 20px; }
.attention.ok { border-left-color: var(--ok-line); background: var(--ok-bg); }
.attention h2 { margin: 4px 0 8px; } .attention li { margin-bottom: 6px; } .todo { color: var(--muted); }
tr.overdue td { font-weight: 600; }
"""

#: Follows the Airflow UI's light or dark theme (its ``<html class>``, the page being in its iframe), else the
#: system's.
THEME_SCRIPT = """
(function () {
  var media = window.matchMedia("(prefers-color-scheme: dark)");
  function parentRoot() {
    try { return window.parent !== window ? window.parent.document.documentElement : null; } catch (e) { return null; }
  }
  function dark() {
    var root = parentRoot();
    if (root && root.classList.contains("dark")) return true;
    if (root && root.classList.contains("light")) return false;
    var stored = null;
    try { stored = window.localStorage.getItem("theme"); } catch (e) {}
    if (stored === "dark" || stored === "light") return stored === "dark";
    return media.matches;
  }
  function apply() { document.documentElement.classList.toggle("dark", dark()); }
  apply();
  media.addEventListener("change", apply);
  var root = parentRoot();
  if (root) new MutationObserver(apply).observe(root, {attributes: true, attributeFilter: ["class"]});
})();
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


def _words(value) -> str:
    """:func:`_e` of words for a person, a command in them (in backticks, as the words module writes it) as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(value))


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{STYLE}</style>"
        f"<script>{THEME_SCRIPT}</script></head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )


def _cell(source_id: str, row: dict | None) -> str:
    if row is None:
        return "<td class='cell' title='empty'></td>"
    state = "replaced" if row["replaced"] and row["state"] != "broken" else row["state"]
    tip = (
        f"{row['data_version'] or '?'}: {_size(row['bytes'])}, {_size(row['compressed_bytes'])} compressed; "
        f"archived {row.get('archived_at') or '?'}; kept because: {row.get('why') or 'not recorded'}"
        + (f"; replaced {', '.join(row['replaced'])}" if row["replaced"] else "")
        + (f"; PROBLEM: {row['problem']}" if row["problem"] else "")
    )
    mark = {"archived": "A", "replaced": "R", "broken": "!"}[state]
    href = f"{URL_PREFIX}/month/{quote(source_id)}/{row['year']:04d}/{row['month']:02d}"
    return f"<td class='cell {state}' title='{_e(tip)}'><a href='{href}'>{mark}</a></td>"


def storage_block(storage: dict | None) -> str:
    """The bucket's months' objects by storage class, and the estimated monthly bill, with the prices' region and
    date."""
    if not storage:
        return ""
    from kingfisher_archive.storage_cost import usd

    unpriced = (
        f" No price for {_e(', '.join(storage['unpriced']))}: left out of the estimate." if storage["unpriced"] else ""
    )
    return (
        "<h2 id='storage'>Stored, and what it costs</h2>"
        f"<p>About <b>{usd(storage['usd_per_month'])} a month</b> to store {_size(storage['bytes'])}, at "
        f"{_e(storage['region'])} prices as of {_e(storage['as_of'])} <span class='note'>({_e(storage['source'])}; "
        "storage only: requests, restores and transfers are extra; the Variable kingfisher_archive_storage_prices "
        f"sets other prices).{unpriced}</span></p>"
        + _table(
            (
                "storage class",
                ("objects", "num"),
                ("stored", "num"),
                ("USD per GB-month", "num"),
                ("USD per month", "num"),
            ),
            [
                (
                    c["storage_class"],
                    c["objects"],
                    _size(c["bytes"]),
                    "-" if c["usd_per_gb_month"] is None else f"{c['usd_per_gb_month']:g}",
                    usd(c["usd_per_month"]),
                )
                for c in storage["classes"]
            ],
            classes=("id", "num", "num", "num", "num"),
        )
    )


def attention_block(items: list[dict]) -> str:
    """What needs a person, each with what to do; or that nothing does."""
    if not items:
        return (
            "<section id='needs-attention' class='attention ok'><h2>Needs attention</h2>"
            "<p>Nothing: no held crawl, no long wait for Kingfisher Process, no broken month, no failure in the last "
            "run.</p></section>"
        )
    return (
        f"<section id='needs-attention' class='attention'><h2>Needs attention ({len(items)})</h2><ul>"
        + "".join(
            f"<li data-kind='{_e(item['kind'])}'>{_words(item['what'])}<br>"
            f"<span class='todo'>What to do: {_words(item['what_to_do'])}</span></li>"
            for item in items
        )
        + "</ul></section>"
    )


@app.get("/", response_class=HTMLResponse)
def catalogue_page(page: int = Query(1, ge=1), refresh: bool = False) -> HTMLResponse:
    found = load(refresh)
    sources = found["sources"]
    pages = max(1, -(-len(sources) // PAGE_SIZE))
    shown = sources[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    periods = found["periods"]
    on_disk = found["on_disk"]
    parts = [
        f"<p>Bucket <b>{_e(found['bucket'])}</b>: {len(sources)} sources, "
        f"{sum(len(s['months']) for s in sources)} months, {_size(found['totals']['bytes_archived'])} archived as "
        f"{_size(found['totals']['compressed_bytes'])}, {_size(found['totals']['bytes_freed'])} freed on the "
        f"Kingfisher host. <span class='note'>Read at {_e(found['generated_at'])}, kept for {CACHE_SECONDS:.0f} s "
        f"(<a href='{URL_PREFIX}/?{urlencode({'page': page, 'refresh': 1})}'>read again</a>).</span></p>",
        attention_block(found.get("attention") or []),
    ]

    parts.append("<h2>On the Kingfisher host</h2>")
    if found.get("ledger_note"):
        parts.append(f"<p class='note'>{_e(found['ledger_note'])}</p>")
    warning_days = found.get("waiting_warning_days")
    parts.append("<h3>Waiting for Kingfisher Process</h3>")
    parts.append(
        "<p class='note'>Closed by Kingfisher Collect, its files still being loaded by Kingfisher Process: left "
        f"alone until they are. A wait longer than {_e(warning_days)} days needs attention.</p>"
        if on_disk["waiting"]
        else ""
    )
    parts.append(
        _table(
            ("crawl", "collection", "closed", ("days waited", "num"), "still to load"),
            [(w["id"], w["collection_id"], w["since"], w["waited_days"], w["detail"]) for w in on_disk["waiting"]],
            classes=("id", "num", "date", "num", "why"),
            row_classes=["overdue" if w.get("overdue") else "" for w in on_disk["waiting"]],
        )
    )
    parts.append("<h3>Held: not decided, looked at again by the next run</h3>")
    parts.append(
        _table(
            ("crawl", "why", "since", "what to do"),
            [(h["id"], h["why"], h["since"], h["what_to_do"]) for h in on_disk["held"]],
            classes=("id", "why", "date", "why"),
        )
    )
    retention = found.get("retention_days")
    parts.append("<h3>Kept on disk: not archived, or archived and written into again</h3>")
    parts.append(
        f"<p class='note'>Local retention deletes the crawls not archived {retention} days after their crawl; a crawl "
        "Kingfisher Collect writes into again is never deleted.</p>"
        if retention
        else "<p class='note'>Local retention is off (the Variable kingfisher_archive_retention_days is not set): "
        "they stay until deleted by hand.</p>"
        if on_disk["kept"]
        else ""
    )
    header = ("crawl", "outcome", "why", ("size", "num")) + (("deleted from",) if retention else ())
    parts.append(
        _table(
            header,
            [
                (k["id"], k["outcome"], k["why"], _size(k["bytes"])) + ((k["swept_from"] or "-",) if retention else ())
                for k in on_disk["kept"]
            ],
            classes=("id", "", "why", "num", ""),
        )
    )

    parts += [
        "<h2>Sources by month of their data</h2>",
        "<p class='note'>A: archived; R: archived, replacing an earlier archive of the month; !: broken (see the "
        "month); empty: nothing archived. Hover a month for its crawl, sizes, date and why it was kept; open it for "
        "its metadata.json and the restore command.</p>",
        f"<p>Page {page} of {pages}: "
        + " ".join(
            f"<a href='{URL_PREFIX}/?page={n}'>{n}</a>" if n != page else f"<b>{n}</b>" for n in range(1, pages + 1)
        )
        + "</p>",
        "<table class='grid'><tr><th>source</th><th class='num'>bytes</th><th class='num'>compressed</th>"
        + "".join(f"<th class='period'>{_e(p)}</th>" for p in periods)
        + "</tr>",
    ]
    for source in shown:
        by_period = {row["period"]: row for row in source["months"]}
        parts.append(
            f"<tr><th>{_e(source['source_id'])}</th><td class='num'>{_size(source['bytes'])}</td>"
            f"<td class='num'>{_size(source['compressed_bytes'])}</td>"
            + "".join(_cell(source["source_id"], by_period.get(p)) for p in periods)
            + "</tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Archived months</h2>")
    parts.append(
        _table(
            (
                "source",
                "month of the data",
                "crawl",
                ("size", "num"),
                ("compressed", "num"),
                "archived on",
                "why it was kept",
                "replaced",
                "problem",
            ),
            [
                (
                    source["source_id"],
                    row["period"],
                    row["data_version"] or "-",
                    _size(row["bytes"]),
                    _size(row["compressed_bytes"]),
                    (row.get("archived_at") or "-")[:10],
                    row.get("why") or "not recorded in its metadata.json",
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
            classes=("", "", "id", "num", "num", "", "why", "id", "why"),
        )
    )
    parts.append(storage_block(found.get("storage")))
    parts.append("<h2>Archived and freed, by month of the runs</h2>")
    parts.append(
        _table(
            ("month of the runs", ("archived", "num"), ("compressed", "num"), ("freed on the Kingfisher host", "num")),
            [
                (m["month"], _size(m["bytes_archived"]), _size(m["compressed_bytes"]), _size(m["bytes_freed"]))
                for m in found["totals"]["by_month"]
            ],
            classes=("", "num", "num", "num"),
        )
    )
    return _page("Kingfisher Archive catalogue", "".join(parts))


def _table(header, rows, links=None, classes=(), row_classes=()) -> str:
    """A table; a header cell may be ``(text, class)``; with ``links``, each row's second cell links to the URL of
    the same index; ``classes`` are the cells' classes by column (a ``why`` cell shows a `command` as code),
    ``row_classes`` the rows' by index."""
    if not rows:
        return "<p class='note'>None.</p>"
    head = "".join(
        f"<th class='{_e(h[1])}'>{_e(h[0])}</th>" if isinstance(h, tuple) else f"<th>{_e(h)}</th>" for h in header
    )
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column, cell in enumerate(row):
            css = classes[column] if column < len(classes) and classes[column] else ""
            attribute = f" class='{css}'" if css else ""
            text = _words(cell) if css == "why" else _e(cell)
            if links and column == 1:
                text = f"<a href='{_e(links[index])}'>{text}</a>"
            cells.append(f"<td{attribute}>{text}</td>")
        css = row_classes[index] if index < len(row_classes) and row_classes[index] else ""
        body.append(f"<tr{f' class={chr(39)}{css}{chr(39)}' if css else ''}>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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
            # Short enough for the navigation's button to show it whole (longer names are cut: "Kingfisher...").
            "name": "Archive",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "kingfisher-archive",
        }
    ]
