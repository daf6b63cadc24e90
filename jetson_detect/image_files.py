"""Which files are images: one list for every folder the package reads (run's sources, eval, int8 calibration),
so a folder means the same set of images to each command. All are formats OpenCV's ``imread`` decodes."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
