"""Layer 1, the data: CIFAR-10 fetched and verified, held on the device and augmented in one gather
(``cifar``); Section 3.4's ImageNet pipeline for any ImageFolder or Tiny ImageNet (``imagenet``); box
annotations read and checked line by line (``boxes``). May import ``base`` only."""
