"""Airflow logging configuration that pins the ``kingfisher_archive`` logger at INFO.

Use it by copying this file to ``$AIRFLOW_HOME/config/logging_config.py`` (Airflow puts that folder on
``sys.path``) and setting::

    [logging]
    logging_config_class = logging_config.LOGGING_CONFIG

(or ``AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS=logging_config.LOGGING_CONFIG``). docker-compose.yaml does both.

Why pin a level: the package's modules log through ``logging.getLogger(__name__)``, so every logger is a child of
``kingfisher_archive``. Pinning the parent keeps the archive's progress messages at INFO even when someone turns
``[logging] logging_level`` up to DEBUG to chase an Airflow problem, which would otherwise bury them.

What it does not reach (checked against Airflow 3.3.2): Airflow applies this dict to its long-running components
(scheduler, API server, DAG processor manager, triggerer, Celery worker). Task processes, where the archiving
runs, configure logging from ``[logging] logging_level`` alone; ``[logging] namespace_levels`` applies only to
structlog loggers, not to stdlib loggers such as these. So task logs show the archive's INFO lines whenever
``logging_level`` is INFO (the default) or lower.

To see DEBUG messages from the archive (file-by-file detail): set ``KINGFISHER_ARCHIVE_LEVEL = "DEBUG"`` below
*and* ``[logging] logging_level = DEBUG`` (env ``AIRFLOW__LOGGING__LOGGING_LEVEL=DEBUG``). Both are needed:
Airflow's console handler drops every record below ``logging_level`` before a logger's own level matters.
Switch back afterwards; DEBUG makes the rest of Airflow verbose too.
"""

from copy import deepcopy

from airflow.config_templates.airflow_local_settings import DEFAULT_LOGGING_CONFIG

KINGFISHER_ARCHIVE_LEVEL = "INFO"  # "DEBUG" to debug the archive; see the module docstring for the second step

# A deep copy, so Airflow's own DEFAULT_LOGGING_CONFIG (imported elsewhere too) is left as Airflow built it.
LOGGING_CONFIG = deepcopy(DEFAULT_LOGGING_CONFIG)
LOGGING_CONFIG["loggers"]["kingfisher_archive"] = {
    # No handlers of its own: records propagate to Airflow's root handler, which formats them like every other
    # Airflow log line (and masks secrets). A handler here would print them twice.
    "level": KINGFISHER_ARCHIVE_LEVEL,
    "propagate": True,
}
