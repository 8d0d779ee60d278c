"""Test helpers for gsd-parallel: the fake GSD worker (``fake_gsd``) and, later, a pytest plugin."""
