"""Where the command line finds its bucket, S3 endpoint and credentials, and what it says when they do not work.

First found wins: the flags, the ``KINGFISHER_ARCHIVE_*`` environment variables, the DAGs' own ``AIRFLOW_VAR_``
and ``AIRFLOW_CONN_`` settings in the environment (the Connection only when no endpoint was given), else boto3's
chain for credentials. Every failure is a :class:`SettingsError` (a setting that cannot be understood: a usage
error) or a :class:`ConnectError` (the server refused or cannot be reached), with a one-line message naming the
setting, where it came from, and what to do. See docs/restore-and-audit.md, The command line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from kingfisher_archive import storage_cost
from kingfisher_archive.errors import PermanentError, RetryableError
from kingfisher_archive.s3.client import client_config
from kingfisher_archive.s3.errors import ACCESS_DENIED, CREDENTIALS_REFUSED, NO_SUCH_BUCKET
from kingfisher_archive.settings import (
    BUCKET,
    DATA_DIRECTORY,
    LEDGER,
    LOGS_DIRECTORY,
    S3_CONNECTION,
    THAW_POLL_SECONDS,
    ConfigurationError,
    ledger_path,
    thaw_poll_seconds,
)

BUCKET_ENV = "KINGFISHER_ARCHIVE_BUCKET"
ENDPOINT_ENV = "KINGFISHER_ARCHIVE_ENDPOINT_URL"
DATA_DIRECTORY_ENV = "KINGFISHER_ARCHIVE_DATA_DIRECTORY"
AIRFLOW_BUCKET_ENV = f"AIRFLOW_VAR_{BUCKET.upper()}"
AIRFLOW_CONNECTION_ENV = f"AIRFLOW_CONN_{S3_CONNECTION.upper()}"
#: Kingfisher Collect's directories as the DAGs know them: a restore into them is always refused.
AIRFLOW_DIRECTORY_ENVS = tuple(f"AIRFLOW_VAR_{name.upper()}" for name in (DATA_DIRECTORY, LOGS_DIRECTORY))
DEFAULT_REGION = "us-east-1"
STORAGE_PRICES_ENV = "KINGFISHER_ARCHIVE_STORAGE_PRICES"
AIRFLOW_STORAGE_PRICES_ENV = f"AIRFLOW_VAR_{storage_cost.VARIABLE.upper()}"

_CREDENTIAL_SOURCES = {
    "env": "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY",
    "iam-role": "the instance's IAM role",
    "container-role": "the container's IAM role",
    "assume-role": "an assumed role (AWS config file)",
    "assume-role-with-web-identity": "a web identity role ($AWS_WEB_IDENTITY_TOKEN_FILE)",
    "sso": "AWS SSO (AWS config file)",
    "custom-process": "a credential_process (AWS config file)",
}


class SettingsError(PermanentError):
    """A setting is missing or cannot be understood; the message names it and where it came from."""


class ConnectError(RetryableError):  # also raised for wrong credentials or no bucket
    """The S3 server cannot be reached, refuses the credentials, or has no such bucket."""


@dataclass
class S3Settings:
    """What the command line connects to, and where each part came from (for messages)."""

    bucket: str
    bucket_source: str
    endpoint_url: str | None = None
    endpoint_source: str = ""
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    config_kwargs: dict = field(default_factory=dict)
    credentials_source: str | None = None  # None: boto3's chain, named once the client is made
    from_airflow: list[str] = field(default_factory=list)  # the AIRFLOW_* variables read
    connection_ignored: bool = False  # $AIRFLOW_CONN_... is set, but an endpoint was given otherwise

    def note(self) -> str | None:
        """One line saying which settings came from Airflow's environment variables, or ``None``."""
        parts = []
        if AIRFLOW_BUCKET_ENV in self.from_airflow:
            parts.append(f"bucket {self.bucket!r} from ${AIRFLOW_BUCKET_ENV}")
        if AIRFLOW_CONNECTION_ENV in self.from_airflow:
            what = []
            if self.endpoint_source.endswith(f"${AIRFLOW_CONNECTION_ENV}"):
                what.append(f"endpoint {self.endpoint_url}")
            if self.credentials_source == _connection_credentials():
                what.append("credentials")
            if what:
                parts.append(f"{' and '.join(what)} from ${AIRFLOW_CONNECTION_ENV}")
        return "using " + "; ".join(parts) if parts else None


def _connection_credentials() -> str:
    return f"the login and password of ${AIRFLOW_CONNECTION_ENV}"


def check_endpoint_url(value: str, source: str) -> str:
    """``value`` if it is an http(s) URL with a host; else a :class:`SettingsError` saying how to write it."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise SettingsError(f"{source} is {value!r}, whose port is not a number") from None
        return value
    hint = f"http://{value}" if "://" not in value else "http://127.0.0.1:9000"
    raise SettingsError(f"{source} is {value!r}, not an http:// or https:// URL: give the scheme, e.g. {hint}")


def parse_airflow_connection(value: str) -> dict:
    """An Airflow Connection from its environment variable: JSON if it starts with ``{``, else a URI.

    Returns ``{"login", "password", "extra"}`` (``extra`` a dict), as Airflow would read them.
    """
    value = value.strip()
    source = f"${AIRFLOW_CONNECTION_ENV}"
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError as e:
            raise SettingsError(f"{source} starts with '{{' but is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{source} is JSON but not an object")
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except ValueError as e:
                raise SettingsError(f"the extra of {source} is not valid JSON ({e})") from None
        login, password = data.get("login"), data.get("password")
    else:
        parts = urlsplit(value)
        if not parts.scheme or "://" not in value:
            raise SettingsError(
                f"{source} is neither JSON nor a connection URI (aws://KEY:SECRET@/?endpoint_url=...): fix it, "
                "or pass --no-airflow"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        extra: dict = {}
        for key, item in query:
            if key == "__extra__":
                try:
                    extra = json.loads(item)
                except ValueError as e:
                    raise SettingsError(f"the __extra__ of {source} is not valid JSON ({e})") from None
                break
            extra[key] = item
        login = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
    if not isinstance(extra, dict):
        raise SettingsError(f"the extra of {source} is not a JSON object")
    return {"login": login or None, "password": password or None, "extra": extra}


def resolve(
    bucket: str | None, endpoint_url: str | None, *, use_airflow: bool = True, environ=os.environ
) -> S3Settings:
    """The settings from the flags (``None`` when not given) and the environment; see the module's docstring."""
    from_airflow: list[str] = []
    if bucket:
        bucket_source = "--bucket"
    elif environ.get(BUCKET_ENV):
        bucket, bucket_source = environ[BUCKET_ENV], f"${BUCKET_ENV}"
    elif use_airflow and environ.get(AIRFLOW_BUCKET_ENV):
        bucket, bucket_source = environ[AIRFLOW_BUCKET_ENV].strip(), f"${AIRFLOW_BUCKET_ENV}"
        from_airflow.append(AIRFLOW_BUCKET_ENV)
    else:
        raise SettingsError(
            f"no bucket: pass --bucket, or set ${BUCKET_ENV} (or ${AIRFLOW_BUCKET_ENV}, as the DAGs read it)"
        )

    result = S3Settings(bucket=bucket, bucket_source=bucket_source, from_airflow=from_airflow)
    if endpoint_url:
        result.endpoint_url = check_endpoint_url(endpoint_url, "--endpoint-url")
        result.endpoint_source = "--endpoint-url"
    elif environ.get(ENDPOINT_ENV):
        result.endpoint_url = check_endpoint_url(environ[ENDPOINT_ENV], f"${ENDPOINT_ENV}")
        result.endpoint_source = f"${ENDPOINT_ENV}"
    elif use_airflow and environ.get(AIRFLOW_CONNECTION_ENV):
        _from_connection(result, parse_airflow_connection(environ[AIRFLOW_CONNECTION_ENV]))
        from_airflow.append(AIRFLOW_CONNECTION_ENV)
    result.connection_ignored = (
        bool(result.endpoint_url and use_airflow and environ.get(AIRFLOW_CONNECTION_ENV))
        and AIRFLOW_CONNECTION_ENV not in from_airflow
    )
    return result


def _from_connection(result: S3Settings, connection: dict) -> None:
    source = f"${AIRFLOW_CONNECTION_ENV}"
    extra = connection["extra"]
    endpoint = extra.get("endpoint_url") or extra.get("host")
    if endpoint:
        result.endpoint_url = check_endpoint_url(str(endpoint), f"extra.endpoint_url of {source}")
        result.endpoint_source = f"extra.endpoint_url of {source}"
    result.region = extra.get("region_name") or None
    config_kwargs = extra.get("config_kwargs") or {}
    if not isinstance(config_kwargs, dict):
        raise SettingsError(f"extra.config_kwargs of {source} is not a JSON object")
    result.config_kwargs = config_kwargs
    if connection["login"]:
        if not connection["password"]:
            raise SettingsError(f"{source} has a login (the access key) but no password (the secret key)")
        result.access_key, result.secret_key = connection["login"], connection["password"]
        result.session_token = extra.get("aws_session_token") or None
        result.credentials_source = _connection_credentials()
    else:
        result.profile = extra.get("profile_name") or None


#: The first request (listing one key) tries twice, a second apart at most: a wrong endpoint fails in seconds.
PROBE_RETRIES = {"mode": "standard", "total_max_attempts": 2}


def connect(settings: S3Settings):
    """A client for ``settings`` once a probe has listed the bucket; :class:`ConnectError` saying why not."""
    from botocore.config import Config

    check_bucket(make_client(settings, Config(retries=PROBE_RETRIES, connect_timeout=10)), settings)
    return make_client(settings)


def make_client(settings: S3Settings, overrides=None):
    """A boto3 S3 client for ``settings``: path-style addressing for S3-compatible servers, one checksum per byte."""
    import boto3
    from botocore.config import Config

    try:
        session = boto3.session.Session(profile_name=settings.profile)
    except BotoCoreError as e:  # ProfileNotFound
        raise SettingsError(f"{_one_line(e)}: check $AWS_PROFILE or the profile_name of the connection") from None
    if settings.credentials_source is None:
        settings.credentials_source = _describe_chain(session)
    try:
        base = Config(**settings.config_kwargs)
    except TypeError as e:
        raise SettingsError(f"extra.config_kwargs of ${AIRFLOW_CONNECTION_ENV}: {e}") from None
    region = settings.region or session.region_name
    if settings.endpoint_url:
        region = region or DEFAULT_REGION
        addressing = Config(s3={"addressing_style": "path", **(base.s3 or {})})
        base = base.merge(addressing)
    kwargs = {
        "region_name": region,
        "endpoint_url": settings.endpoint_url,
        "config": client_config(base.merge(overrides) if overrides is not None else base),
    }
    if settings.access_key:
        kwargs.update(
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            aws_session_token=settings.session_token,
        )
    try:
        client = session.client("s3", **kwargs)
    except (BotoCoreError, ValueError) as e:
        raise SettingsError(f"cannot make an S3 client for {_endpoint(settings)}: {_one_line(e)}") from None
    if not settings.endpoint_url:
        settings.endpoint_url = client.meta.endpoint_url
        settings.endpoint_source = "AWS (no endpoint given)"
    return client


def _describe_chain(session) -> str:
    """Where boto3's chain finds credentials, in words, or that it finds none."""
    try:
        credentials = session.get_credentials()
    except BotoCoreError as e:
        raise ConnectError(f"cannot read S3 credentials: {_one_line(e)}") from None
    if credentials is None:
        return "nowhere"
    method = credentials.method or ""
    profile = session.profile_name or "default"
    if method == "shared-credentials-file":
        path = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
        return f"{path} (profile {profile!r})"
    if method == "config-file":
        path = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
        return f"{path} (profile {profile!r})"
    return _CREDENTIAL_SOURCES.get(method, f"boto3's {method or 'default'} credentials")


def _endpoint(settings: S3Settings) -> str:
    if settings.endpoint_url:
        return f"{settings.endpoint_url} (from {settings.endpoint_source})"
    return "AWS S3"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def check_bucket(client, settings: S3Settings) -> None:
    """List one key of the bucket; raise :class:`ConnectError` naming what failed and what to do."""
    bucket = f"bucket {settings.bucket!r} (from {settings.bucket_source})"
    where = _endpoint(settings)
    credentials = f"the credentials from {settings.credentials_source}"
    try:
        client.list_objects_v2(Bucket=settings.bucket, MaxKeys=1)
    except NoCredentialsError:
        if settings.connection_ignored:
            raise ConnectError(
                f"no S3 credentials found for {where}: ${AIRFLOW_CONNECTION_ENV} is not read when the endpoint is "
                "given otherwise; leave the endpoint out to use the Connection, or set $AWS_ACCESS_KEY_ID and "
                "$AWS_SECRET_ACCESS_KEY"
            ) from None
        raise ConnectError(
            "no S3 credentials found: set $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (or $AWS_PROFILE), or "
            f"${AIRFLOW_CONNECTION_ENV} as the DAGs use it"
        ) from None
    except PartialCredentialsError as e:
        raise ConnectError(f"incomplete S3 credentials: {_one_line(e)}") from None
    except ClientError as e:
        error = e.response.get("Error", {})
        code = str(error.get("Code", "")) or str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in NO_SUCH_BUCKET:
            raise ConnectError(
                f"the {bucket} does not exist at {where}: check its name, or list the buckets you can see with "
                "`aws s3 ls`"
            ) from None
        if code in CREDENTIALS_REFUSED:
            raise ConnectError(
                f"{where} refused {credentials} ({code}): check them, or give others (AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ${AIRFLOW_CONNECTION_ENV})"
            ) from None
        if code in ACCESS_DENIED:
            raise ConnectError(
                f"{where} denied {credentials} access to the {bucket} ({code}): they need s3:ListBucket and "
                "s3:GetObject on it"
            ) from None
        message = error.get("Message") or ""
        raise ConnectError(f"{where} refused to list the {bucket}: {code} {message}".rstrip()) from None
    except EndpointConnectionError:
        raise ConnectError(f"cannot connect to {where}: check the URL and that the server is running") from None
    except ConnectTimeoutError:
        raise ConnectError(
            f"timed out connecting to {where}: check the URL, that the server is running and that no firewall is "
            "in the way"
        ) from None
    except BotoCoreError as e:
        raise ConnectError(f"cannot use {where}: {_one_line(e)}") from None


def forbidden_directories(environ=os.environ) -> list[tuple[str, str]]:
    """Kingfisher Collect's directories a restore must never write into, with the variable that named each."""
    found = []
    for name in (DATA_DIRECTORY_ENV, *AIRFLOW_DIRECTORY_ENVS):
        if environ.get(name):
            found.append((environ[name], f"${name}"))
    return found


AIRFLOW_LEDGER_ENV = f"AIRFLOW_VAR_{LEDGER.upper()}"
AIRFLOW_THAW_POLL_ENV = f"AIRFLOW_VAR_{THAW_POLL_SECONDS.upper()}"
AIRFLOW_DATA_DIRECTORY_ENV = f"AIRFLOW_VAR_{DATA_DIRECTORY.upper()}"


def poll_seconds(flag: float | None, *, use_airflow: bool = True, environ=os.environ) -> float:
    """How often ``restore --wait`` asks whether a cold month's copy is ready: ``--poll-seconds``, else the DAGs'
    Variable in the environment, else the DAGs' default."""
    if flag is not None:
        return flag
    value = environ.get(AIRFLOW_THAW_POLL_ENV, "") if use_airflow else ""
    try:
        return thaw_poll_seconds(lambda name: value)
    except ConfigurationError:
        raise SettingsError(
            f"${AIRFLOW_THAW_POLL_ENV} is {value!r}, not a number of seconds > 0: fix it, or pass --poll-seconds"
        ) from None


def find_ledger(flag: str | None, *, use_airflow: bool = True, environ=os.environ) -> tuple[str, str]:
    """The DAG's ledger file and where its name came from: ``--ledger``, else the DAGs' Variable in the environment,
    else the DAGs' default (``$AIRFLOW_HOME/kingfisher_archive.sqlite3``). Its directory must exist."""
    if flag:
        path, source = flag, "--ledger"
    elif use_airflow and environ.get(AIRFLOW_LEDGER_ENV, "").strip():
        path, source = environ[AIRFLOW_LEDGER_ENV].strip(), f"${AIRFLOW_LEDGER_ENV}"
    elif use_airflow and environ.get("AIRFLOW_HOME", "").strip():
        path, source = ledger_path(None, environ=environ), "$AIRFLOW_HOME (the DAGs' default)"
    else:
        raise SettingsError(
            f"no ledger: pass --ledger, or set ${AIRFLOW_LEDGER_ENV} (or $AIRFLOW_HOME), as the DAGs read it"
        )
    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise SettingsError(
            f"the ledger {path} (from {source}) is in {directory}, which is not a directory: give the DAG's ledger "
            f"file (Airflow Variable {LEDGER!r})"
        )
    return path, source


def data_directory(flag: str | None, *, use_airflow: bool = True, environ=os.environ) -> tuple[str, str]:
    """Kingfisher Collect's data directory (FILES_STORE) and where its name came from: ``--data-directory``, else
    ``$KINGFISHER_ARCHIVE_DATA_DIRECTORY``, else the DAGs' Variable in the environment. It must be a directory."""
    if flag:
        path, source = flag, "--data-directory"
    elif environ.get(DATA_DIRECTORY_ENV, "").strip():
        path, source = environ[DATA_DIRECTORY_ENV].strip(), f"${DATA_DIRECTORY_ENV}"
    elif use_airflow and environ.get(AIRFLOW_DATA_DIRECTORY_ENV, "").strip():
        path, source = environ[AIRFLOW_DATA_DIRECTORY_ENV].strip(), f"${AIRFLOW_DATA_DIRECTORY_ENV}"
    else:
        raise SettingsError(
            f"no data directory: pass --data-directory, or set ${DATA_DIRECTORY_ENV} (or "
            f"${AIRFLOW_DATA_DIRECTORY_ENV}, as the DAGs read it)"
        )
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise SettingsError(f"the data directory {path} (from {source}) is not a directory")
    return path, source


def storage_prices(*, use_airflow: bool = True, environ=os.environ) -> storage_cost.Prices:
    """The price table ``list`` counts with: ``$KINGFISHER_ARCHIVE_STORAGE_PRICES``, else the DAGs' Variable in
    the environment, else the dated defaults (:mod:`kingfisher_archive.storage_cost`); JSON as the Variable's."""
    for name in (STORAGE_PRICES_ENV, AIRFLOW_STORAGE_PRICES_ENV if use_airflow else None):
        if name and environ.get(name, "").strip():
            try:
                return storage_cost.parse(environ[name], f"${name}")
            except storage_cost.PricesError as e:
                raise SettingsError(str(e)) from None
    return storage_cost.DEFAULT
