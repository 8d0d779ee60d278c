"""Running a parallel run: the supervisor, its workers, budget, automerge."""
