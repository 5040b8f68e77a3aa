"""Layer 0, what every other layer may use: where files live (``paths``), atomic writes with provenance
(``io``), the device and precision a run gets (``device``), the paper's own numbers (``paper``), and the
errors a user can fix (``errors``).
Imports nothing else from resnet_lib."""
