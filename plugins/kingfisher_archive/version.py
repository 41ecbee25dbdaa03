"""The distribution's name and version, written once: ``pyproject.toml`` reads the version from this file.

Plain Python with no imports, so that the wheel's build, the command line's ``--version`` and ``metadata.json``'s
``archiver`` all say the same thing, whether the package is installed or copied into Airflow's plugins folder.
"""

DISTRIBUTION = "kingfisher-archive"
__version__ = "1.0.0"

#: ``metadata.json``'s ``archiver``: what wrote an archive (before 1.0.0: ``kingfisher-archive (Airflow)``).
ARCHIVER = f"{DISTRIBUTION} {__version__}"
