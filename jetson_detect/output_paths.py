"""Outputs never overwrite inputs: the one check every command runs on its file names before doing any work.

Paths are compared as the files they name (real paths, so symlinks, ``./x`` and ``x`` agree; an existing pair also
by device and inode, so hard links agree). No OpenCV, no model: ``convert`` and ``export-onnx`` use it too.
"""

import glob
import os
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import JetsonDetectError

Named = Tuple[str, str]  # (what the user called it: "--source", "--save-json", "checkpoint", ...; the path)

LIVE_PREFIXES = ("/dev/",)


def annotated_image_name(image_path: str) -> str:
    """The file name an annotated copy of an image gets in an output folder: the image's own name (and format), so
    ``photo.jpg`` and ``photo.png`` from one folder stay two files."""
    return os.path.basename(image_path)


def _is_path(uri: Optional[str]) -> bool:
    """True for a file-system path; False for cameras, streams, web and display outputs."""
    if not uri:
        return False
    if uri.startswith("file://"):
        return True
    return "://" not in uri and not uri.isdigit() and not uri.startswith(LIVE_PREFIXES)


def _strip(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _expand(uri: str) -> List[str]:
    """An input path, or every match of a glob."""
    path = _strip(uri)
    if any(c in path for c in "*?["):
        return sorted(glob.glob(path))
    return [path]


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: the real paths decided
        return False


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies below it."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def check_outputs(inputs: Sequence[Named], outputs: Sequence[Named], output_dirs: Sequence[Named] = ()) -> None:
    """Refuse, with one line, any output that would destroy an input or another output.

    ``inputs``: (name, path) of everything the command reads: sources (a file, a folder or a glob; cameras and
    streams are ignored), weights, model yamls, calibration folders. ``outputs``: (name, path) of every file the
    command writes, including the files it will put in an output folder (e.g. ``("--save-dir", "out/" +
    annotated_image_name(image))`` for every image). ``output_dirs``: (name, path) of the folders it writes
    into (``--save-dir``, an ``--output`` folder). Refused: an output file that is an input file; an output folder
    that is an input folder or lies inside one; two outputs that are one file (e.g. ``a/photo.jpg`` and
    ``b/photo.jpg`` both annotated as ``out/photo.jpg``). Raises ``JetsonDetectError``; returns None when safe.
    """
    input_files: List[Named] = []
    input_dirs: List[Named] = []
    for what, uri in inputs:
        if not _is_path(uri):
            continue
        for path in _expand(uri):
            if os.path.isdir(path):
                input_dirs.append((what, path))
            elif os.path.exists(path):
                input_files.append((what, path))
    for what, uri in output_dirs:
        if not _is_path(uri):
            continue
        folder = _strip(uri)
        for in_what, in_path in input_dirs:
            if _inside(folder, in_path):
                where = "is" if _same_file(folder, in_path) else "is inside"
                raise JetsonDetectError("{} {} {} the {} folder {}: outputs would overwrite or mix with the inputs; "
                                        "choose a folder outside it".format(what, folder, where, in_what, in_path))
        for in_what, in_path in input_files:
            if _same_file(folder, in_path):
                raise JetsonDetectError("{} {} is the {} file {}: choose a folder".format(what, folder, in_what,
                                                                                         in_path))
    seen: Dict[str, Named] = {}
    for what, uri in outputs:
        if not _is_path(uri):
            continue
        path = _strip(uri)
        for in_what, in_path in input_files:
            if _same_file(path, in_path):
                raise JetsonDetectError("{} {} is the same file as {} {}: writing it would destroy the input; "
                                        "choose another output path".format(what, path, in_what, in_path))
        for in_what, in_path in input_dirs:
            if _same_file(path, in_path):
                raise JetsonDetectError("{} {} is the {} folder {}: choose an output file outside it".format(
                    what, path, in_what, in_path))
        key = os.path.realpath(path)
        if key in seen:
            first_what, first_path = seen[key]
            raise JetsonDetectError("{} {} and {} {} are the same output file: one would overwrite the other; "
                                    "give each output its own path".format(first_what, first_path, what, path))
        seen[key] = (what, path)
