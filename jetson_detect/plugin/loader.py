"""Load ``libyolo_decode_nms.so`` so that its creator registers with TensorRT, before any engine is built or read."""

import ctypes
import os
from pathlib import Path
from typing import Dict, List, Optional

from jetson_detect.errors import JetsonDetectError
from jetson_detect.plugin import LIBRARY_NAME, PLUGIN_DIR

ENV_VAR = "JETSON_DETECT_PLUGIN"
BUILD_HINT = "build it on this machine with scripts/build_plugin.sh"

# Handles stay referenced for the life of the process: unloading would unregister the creator under TensorRT.
_LOADED: Dict[str, ctypes.CDLL] = {}


def candidate_paths() -> List[Path]:
    """Where the library is looked for: $JETSON_DETECT_PLUGIN, then next to this module, then its build/ folder."""
    paths = []
    if os.environ.get(ENV_VAR):
        paths.append(Path(os.environ[ENV_VAR]).expanduser())
    paths.append(PLUGIN_DIR / LIBRARY_NAME)
    paths.append(PLUGIN_DIR / "build" / LIBRARY_NAME)
    return paths


def load_plugin_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Load the plugin library once (``path``, or the first of ``candidate_paths()`` that exists)."""
    if path is not None:
        chosen = Path(path).expanduser()
        if not chosen.is_file():
            raise JetsonDetectError("YoloDecodeNMS plugin library {} does not exist: {}".format(chosen, BUILD_HINT))
    else:
        found = [p for p in candidate_paths() if p.is_file()]
        if not found:
            raise JetsonDetectError("YoloDecodeNMS plugin library not found (looked at {}): {}, or set {}".format(
                ", ".join(str(p) for p in candidate_paths()), BUILD_HINT, ENV_VAR))
        chosen = found[0]
    key = str(chosen.resolve())
    if key not in _LOADED:
        try:
            _LOADED[key] = ctypes.CDLL(key)
        except OSError as exc:
            raise JetsonDetectError("cannot load YoloDecodeNMS plugin library {}: {}; rebuild it with "
                                    "scripts/build_plugin.sh against this machine's TensorRT".format(key, exc))
    return _LOADED[key]
