"""Layer 2, the networks: the pieces both families are built from, conv helpers, the option A/B/C shortcut and
the basic block (``blocks``); the 6n+2 CIFAR nets (``cifar``); Table 1's ImageNet nets and VGG-19
(``imagenet``); their parameter and FLOP counts (``complexity``); pictures of blocks and networks
(``drawing``); and the spec -> model registry that checkpoints use (``registry``). May import ``base``."""
