"""Landing finished milestones on the integration branch (never imports run/)."""
