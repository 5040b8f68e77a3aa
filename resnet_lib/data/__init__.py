"""Layer 1, the data: CIFAR-10 fetched and verified, held on the device and augmented in one gather
(``cifar``); Section 3.4's ImageNet pipeline (``imagenet``) with its batch sources (``imagenet_sources``),
image files (``images``) and Tiny ImageNet (``tiny_imagenet``); box annotations read and checked line by line,
and crops that carry their boxes (``boxes``); detection sets, composed scenes and VOC (``detection_sets``).
May import ``base`` only."""
