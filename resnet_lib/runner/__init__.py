"""Layer 5, running notebooks: papermill execution and the main job's summary (``notebooks``), the
parameter checks shared by the runner and each notebook's check cell (``params``), parameter sweeps
(``sweep``) and their command lines (``cli``). Notebooks themselves call the lower layers; the runner only
executes them, so it imports ``base`` alone."""
