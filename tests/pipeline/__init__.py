"""End-to-end tests through real dvc: the pipeline, bad input, remotes, team workflow, stage dependencies, committed results."""
