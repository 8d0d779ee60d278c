"""Builtin plugins: gsd-parallel's default hook implementations, registered ``trylast``."""
