pytest_plugins = ["gsd_parallel_plugin.testing"]
