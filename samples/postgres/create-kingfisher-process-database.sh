#!/bin/bash
# Creates the kingfisher_process role and database beside Airflow's metadata database.
#
# docker-compose.yaml mounts this into the postgres image's /docker-entrypoint-initdb.d/, which runs it once, when
# the data volume is first initialised. The tables stay empty: Kingfisher Process creates them with its own
# migrations, or load a dump of a real Kingfisher Process database for a realistic run.
set -euo pipefail

# psql's :'password' quotes the value as a literal, so any character in the password is safe.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$KINGFISHER_PROCESS_DB_PASSWORD" <<'SQL'
CREATE ROLE kingfisher_process LOGIN PASSWORD :'password';
CREATE DATABASE kingfisher_process OWNER kingfisher_process;
SQL
