"""resnet_lib: the computing side of an executable reproduction of He, Zhang, Ren and Sun,
"Deep Residual Learning for Image Recognition" (CVPR 2016).

One module per concept; the notebooks in ``notebooks/`` narrate, plot and call these.
"""
__version__ = "0.1.0"
