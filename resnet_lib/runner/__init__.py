"""Layer 5, running notebooks: papermill execution with parameter checks and the main job's summary
(``notebooks``), parameter sweeps (``sweep``: its grid in ``sweep_grid``, its tables and figure in
``sweep_tables``) and their command lines (``cli``). Notebooks themselves call the lower layers; the runner
only executes them, so it imports ``base`` alone."""
