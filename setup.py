"""jetson_detect: YOLOv5 rebuilt layer by layer for TensorRT on the Jetson Nano, with a CPU (ONNX Runtime) twin.

The base install needs only NumPy and PyYAML, so it never pulls pip's OpenCV over JetPack's GStreamer-enabled
build on a Jetson. Extras: ``cpu`` (ONNX Runtime backend and OpenCV for x86 machines), ``mqtt`` (paho-mqtt: 1.6.1 on
Python 3.6, 2.x elsewhere; both APIs work), ``metrics`` (Prometheus ``/metrics`` on the web app; prometheus_client
0.17.1 is the last release for Python 3.6, pip picks it there), ``dev`` (tests and checks).
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "jetson_detect", "__init__.py"), encoding="utf-8") as handle:
    VERSION = re.search(r'__version__ = "([^"]+)"', handle.read()).group(1)

setup(
    name="jetson_detect",
    version=VERSION,
    description="YOLOv5 detection for the Jetson Nano: TensorRT builder, decode+NMS plugin, live video loop",
    long_description=__doc__,
    license="GPL-3.0-or-later",
    packages=find_packages(include=["jetson_detect", "jetson_detect.*"]),
    package_data={"jetson_detect.plugin": ["kernels/*.cu", "*.cpp", "*.h", "*.cuh", "*.cu"]},
    python_requires=">=3.6",
    # NumPy 1.19.5 (what pip picks on Python 3.6) dies with "Illegal instruction" on Jetson boards unless
    # OPENBLAS_CORETYPE is set (numpy/numpy#18131): excluded, so the Nano gets 1.19.4 (README, Jetson Nano).
    install_requires=["numpy>=1.19,!=1.19.5", "PyYAML>=5.1"],
    extras_require={
        "cpu": ["onnx>=1.10", "onnxruntime>=1.10", "opencv-python-headless>=4.1"],
        "mqtt": ["paho-mqtt>=1.6"],
        "metrics": ["prometheus_client>=0.12,<1"],
        "dev": ["paho-mqtt>=1.6", "prometheus_client>=0.12,<1", "pytest>=7", "mypy>=1.5", "vermin>=1.6", "ruff>=0.4",
                "pycocotools>=2.0.6", "nvidia-cuda-nvrtc-cu12==12.9.86", "nvidia-cuda-runtime-cu12==12.9.79",
                "nvidia-cuda-nvcc-cu12==12.9.86"],
    },
    entry_points={"console_scripts": ["jetson-detect=jetson_detect.cli:main"]},
)
