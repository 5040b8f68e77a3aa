"""Layer 2, the networks: the 6n+2 CIFAR nets with shortcut options A/B/C (``cifar``), Table 1's ImageNet
nets and VGG-19 (``imagenet``), their parameter and FLOP counts (``complexity``), pictures of blocks and
networks (``drawing``), and the spec -> model registry that checkpoints use (``registry``).
May import ``base``."""
