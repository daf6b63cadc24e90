"""The YOLOv5 model: weights I/O, architecture spec, one builder function per block, and the network builder."""
