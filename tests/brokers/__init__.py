"""A package (as is tests/brokers/redis): under pytest's default import mode, test files of the same name in the two
folders (test_docker.py) are then different modules, ``brokers.test_docker`` and ``brokers.redis.test_docker``. Both
folders must be packages: a package named ``redis`` alone would be imported as the top-level ``redis`` (redis-py's)."""
