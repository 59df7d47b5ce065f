"""Root conftest: the harness's pytest plugin is registered by its ``pytest11`` entry point
(``pip install -e .``), so nothing is needed here; fixtures can be overridden in any conftest."""
