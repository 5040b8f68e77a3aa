"""Layer 5, running notebooks: papermill execution with parameter checks and the main job's summary
(``notebooks``), parameter sweeps (``sweep``) and their command lines (``cli``). Notebooks themselves call
the lower layers; the runner only executes them, so it imports ``base`` alone."""
