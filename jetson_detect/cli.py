"""The command line: ``python -m jetson_detect [COMMAND] ...``; without a command it runs detection (``run``).

Each command is a module in ``jetson_detect.commands`` with ``add_arguments(parser)`` and ``main(args) -> int``,
imported only when used, so ``doctor`` works even where OpenCV or ONNX Runtime are missing. A
``JetsonDetectError`` is printed on one line (exit 2); ``--debug`` shows the traceback instead.
"""

import argparse
import importlib
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import JetsonDetectError

COMMANDS = (
    ("run", "detect on images, folders, videos, cameras and streams (the default command)"),
    ("build", "build a TensorRT engine from .wts/.pt weights (on the Jetson)"),
    ("convert", "convert a YOLOv5 .pt checkpoint to a tensorrtx .wts file, without PyTorch"),
    ("export-onnx", "write the network built by the CPU backend as an ONNX file"),
    ("eval", "mAP50 and mAP50-95 (pycocotools) on an image folder with YOLO-format labels"),
    ("doctor", "check this machine: Python, OpenCV/GStreamer, TensorRT, CUDA, plugin, cameras, disk"),
)


def _module(command: str) -> object:
    return importlib.import_module("jetson_detect.commands." + command.replace("-", "_"))


def build_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one command (its options documented by the command's own module)."""
    help_text = dict(COMMANDS)[command]
    prog = "python -m jetson_detect" + ("" if command == "run" else " " + command)
    parser = argparse.ArgumentParser(prog=prog, description=help_text)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    getattr(_module(command), "add_arguments")(parser)
    return parser


def _usage() -> str:
    lines = ["usage: python -m jetson_detect [COMMAND] [options]   (jetson_detect {})".format(__version__), "",
             "commands:"]
    lines += ["  {:<12} {}".format(name, text) for name, text in COMMANDS]
    lines += ["", "'python -m jetson_detect COMMAND --help' shows a command's options; without a command, 'run'."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse, dispatch, and turn user errors into one-line messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenCV's own warnings (e.g. "can't open camera by index") would precede our one-line error; the env wins.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    if argv and argv[0] in ("-h", "--help"):
        try:
            print(_usage())
        except BrokenPipeError:  # `... --help | head`
            pass
        return 0
    if argv and argv[0] == "--version":
        print(__version__)
        return 0
    names = [name for name, _ in COMMANDS]
    command = argv.pop(0) if argv and argv[0] in names else "run"
    debug = "--debug" in argv
    try:
        args = build_parser(command).parse_args(argv)
        return int(getattr(_module(command), "main")(args) or 0)
    except JetsonDetectError as exc:
        if debug:
            raise
        print("error: {}".format(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
