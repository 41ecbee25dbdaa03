# The Airflow image for docker-compose.yaml: Airflow 3.3.2 (its image already holds the amazon, postgres and celery
# providers) with the kingfisher-archive wheel installed, the way docs/installing.md installs it into any Airflow.
#
# Building this image is the one step of the laptop stack that needs the internet (Docker Hub and PyPI);
# everything after `docker compose build` runs offline.

# The wheel, built from the files `make dist` reads (pyproject.toml, README.md, plugins/kingfisher_archive), with
# pyproject.toml's build backend fetched into an isolated build environment.
FROM apache/airflow:3.3.2-python3.11 AS wheel
COPY --chown=airflow:0 pyproject.toml README.md /home/airflow/src/
COPY --chown=airflow:0 plugins/kingfisher_archive /home/airflow/src/plugins/kingfisher_archive
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /home/airflow/dist /home/airflow/src

FROM apache/airflow:3.3.2-python3.11
COPY --from=wheel /home/airflow/dist/ /tmp/dist/
COPY requirements.txt /tmp/requirements.txt
# The wheel with its celery extra (the DAGs' providers and the CeleryExecutor's), at the versions requirements.txt
# pins (what the release was tested with). apache-airflow is named with its version so that pip cannot move Airflow
# while resolving; its [sentry] extra brings sentry-sdk, without which `[sentry] sentry_on = True` makes every task
# fail at start-up (samples/airflow.cfg.snippet). The DAG files come from the dags/ mount, as from a DAG bundle.
RUN set -- /tmp/dist/kingfisher_archive-*-py3-none-any.whl \
    && pip install --no-cache-dir -c /tmp/requirements.txt "apache-airflow[sentry]==3.3.2" "$1[celery]" \
    && python -m kingfisher_archive --version
