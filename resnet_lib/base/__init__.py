"""Layer 0, what every other layer may use: where files live (``paths``), atomic writes with provenance
(``io``), the device and precision a run gets (``device``), and the paper's own numbers (``paper``).
Imports nothing else from resnet_lib."""
