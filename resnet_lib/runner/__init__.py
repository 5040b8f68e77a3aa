"""Layer 5, running notebooks: papermill execution and the main job's summary (``notebooks``), the
parameter checks shared by the runner and each notebook's check cell (``params``), parameter sweeps
(``sweep``: its grid in ``sweep_grid``, its tables and figure in ``sweep_tables``), the README's result
blocks (``readme``), the book of executed notebooks (``book``) and their command lines (``cli``).
Notebooks themselves call the lower layers; the runner only executes them, so it imports ``base`` alone."""
