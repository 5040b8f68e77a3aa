"""How paper-scale runs are scheduled: the budgeted, resumable campaign (``driver``), its named sets of runs
(``sets``), several seeds of a net trained as one fused net (``fused_runs``) and the precision study that
decides which policy Table 6 trains in (``precision_study``). It sits above ``experiments``, whose run
definitions (``experiments.cifar_runs``) and shipped-results readers it schedules and exports."""
