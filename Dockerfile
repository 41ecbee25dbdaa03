# The Airflow image for docker-compose.yaml: Airflow 3.3.2 (its image already holds the amazon, postgres and celery
# providers) plus what the kingfisher_archive package needs on top.
#
# Building this image is the one step of the laptop stack that needs the internet (Docker Hub and PyPI);
# everything after `docker compose build` runs offline.
FROM apache/airflow:3.3.2-python3.11

# lz4 and xxhash at the versions requirements.txt pins. apache-airflow is named with its version so that pip cannot
# move Airflow while resolving; its [sentry] extra brings sentry-sdk, without which `[sentry] sentry_on = True`
# makes every task fail at start-up (samples/airflow.cfg.snippet).
RUN pip install --no-cache-dir "apache-airflow[sentry]==3.3.2" "lz4==4.4.5" "xxhash==4.1.0"
