"""Layer 5, running notebooks: papermill execution and the main job's summary (``notebooks``), the
parameter checks shared by the runner and each notebook's check cell (``params``), parameter sweeps
(``sweep``: its grid in ``sweep_grid``, its tables and figure in ``sweep_tables``), the result
blocks of the README and docs/ (``readme``), the book of executed notebooks (``book``, its first page in
``book_front``) and their command lines (``cli``). Notebooks themselves call the lower layers; the runner
executes them, and reads results through ``experiments`` (the scorecard, the shipped runs) to show them."""
