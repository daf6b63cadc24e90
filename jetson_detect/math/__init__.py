"""Pure NumPy math of the detector: letterbox, BatchNorm folding, decode, NMS, box scaling.

Nothing here imports OpenCV, TensorRT or CUDA; GPU kernels and backends are checked against these functions.
"""
