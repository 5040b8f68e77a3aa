"""Layer 4, the paper's experiments, each the library side of a notebook: residual-learning demos and their
rows and verdict (``residual_demo``, ``residual_report``, 01), Table 1's counts beside the paper
(``architectures``, 02), Section 4.2's CIFAR runs and grid (``cifar_runs``, ``cifar_grid``, 03), Fig. 7's
layer responses (``responses``, 04), the ImageNet recipe and its three test modes (``imagenet_train``,
``imagenet_eval``, 05), localization (``localization``, 06) and detection (``detection``, 07), which share
pretraining and one SGD fine-tuning loop (``fine_tuning``). May import every lower layer, never ``campaign`` or ``runner``."""
