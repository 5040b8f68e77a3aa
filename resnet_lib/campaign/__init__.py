"""How paper-scale runs are scheduled: the budgeted, resumable campaign (``driver``) and its command line
(``command``), its named sets of runs (``sets``), where a campaign stands (``progress``), several seeds of a net
trained as one fused net (``fused_runs``), any number of workers on one campaign folder (``shared``: job locks and
the shared log; ``workers``: one per GPU of a machine; ``slurm``: a job array on a cluster) and the precision study
that decides which policy Table 6 trains in (``precision_study``). It sits above ``experiments``, whose run
definitions (``experiments.cifar_runs``) and shipped-results readers it schedules and exports."""
