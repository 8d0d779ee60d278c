"""Git plumbing: the repository, milestone checkouts and branches, lock files."""
