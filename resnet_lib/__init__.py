"""resnet_lib: the computing side of an executable reproduction of He, Zhang, Ren and Sun,
"Deep Residual Learning for Image Recognition" (CVPR 2016).

Seven layers, each importing only the ones before it (``tests/test_layout.py`` checks this):
``base`` (paths, I/O, device, the paper's numbers) -> ``data`` -> ``models`` -> ``engine`` (training)
-> ``experiments`` (one module per notebook's computing) -> ``campaign`` (how paper-scale runs are
scheduled: the campaign, its sets, fused seeds, the precision study) -> ``runner`` (executing notebooks).
The notebooks in ``notebooks/`` narrate, plot and call these.
"""
__version__ = "0.1.0"

from .base.malloc import tune_malloc as _tune_malloc

_tune_malloc()  # before any tensor exists: see base/malloc.py (the page-fault storm of CPU evaluation)
