"""The GSD adapter: everything that knows how the real GSD worker behaves."""
