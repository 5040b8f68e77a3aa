"""Layer 3, the training engine, generic over models and batch sources: the recipe (``config``), one SGD
step (``step``) and its CUDA-graph replay (``cuda_graph``), torchrun's environment (``distributed``),
run folders and checkpoints (``checkpoint``), and the loop that ties them together (``loop``).
May import ``base``, ``data`` and ``models``; knows nothing of any particular experiment."""
