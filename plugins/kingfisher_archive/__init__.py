"""Archive the crawls that Kingfisher Collect downloaded, once Kingfisher Process has loaded them.

The package is plain Python, one module per noun of the domain, so that every rule can be tested without a
scheduler. Only :mod:`kingfisher_archive.tasks` knows about Airflow; the DAG files in ``dags/`` wire its task
functions together.
"""

from kingfisher_archive.version import __version__

__all__ = ["__version__"]
