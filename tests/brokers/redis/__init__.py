"""The Redis providers' tests (a package: see tests/brokers/__init__.py)."""
