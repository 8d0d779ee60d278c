"""``python -m gsd_parallel_plugin``: the same as ``gsd-parallel``."""

from .cli import run

run()
