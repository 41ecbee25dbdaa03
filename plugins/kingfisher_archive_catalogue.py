"""The catalogue page for a copied ``plugins/`` folder: Airflow's plugin loader reads top-level modules of the plugins
folder only, and the plugin lives in the package (:mod:`kingfisher_archive.catalogue_page`).

Installed as a wheel, the package registers the plugin itself (the ``airflow.plugins`` entry point). Airflow keeps
the first plugin of a name and reports a second one as an import error ("already registered"), so when an installed
distribution already offers the plugin this module offers nothing: the page is registered once either way.
"""

from importlib.metadata import entry_points

ENTRY_POINT = "kingfisher_archive.catalogue_page:KingfisherArchiveCatalogue"

if not any(entry.value == ENTRY_POINT for entry in entry_points(group="airflow.plugins")):
    from kingfisher_archive.catalogue_page import KingfisherArchiveCatalogue  # noqa: F401 (the loader looks here)
