"""Whole-file writes that never leave half a file: a temporary file in the same folder, fsync, then os.replace.

Every file the package writes in one piece (``.wts``, ``.onnx``, engines, engine metadata, timing caches, alarm
snapshots and clips) goes through ``atomic_write_bytes`` or ``atomic_output``. A full disk, a crash or a kill
leaves either the old file or the new one under the name, never a torn one, and no temporary file behind
(except after a power cut between the write and the rename: a hidden ``.NAME.*.tmp`` beside it). A device or
pipe (``/dev/null``, ``/dev/stdout``) is written in place, never replaced.
"""

import contextlib
import errno
import os
import stat
import tempfile
from typing import IO, Any, Callable, Iterator, Optional

from .errors import JetsonDetectError

WriteFn = Callable[[int, Any], int]  # os.write, or a fault-injecting stand-in in tests


def write_all(fd: int, data: bytes, write: Optional[WriteFn] = None) -> None:
    """Write every byte or raise OSError: os.write may write less than asked (a nearly full disk, a signal)."""
    write = write or os.write  # looked up per call, so a test's monkeypatched os.write is seen
    view = memoryview(data)
    while view:
        written = write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "No space left on device (short write)")
        view = view[written:]


def write_error(what: str, path: str, exc: OSError) -> JetsonDetectError:
    """The one-line error for a failed write of ``path``."""
    reason = exc.strerror or str(exc)
    hint = "free some space or choose another disk" if exc.errno == errno.ENOSPC else "choose a writable path"
    return JetsonDetectError("{}: cannot write {} ({}); nothing was written: {}".format(path, what, reason, hint))


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable; some filesystems cannot open a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path: str) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0666 minus the umask (mkstemp uses 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str, what: str = "the file", mode: str = "wb",
                  encoding: Optional[str] = None) -> Iterator[IO[Any]]:
    """``with atomic_output(path, "the ONNX file") as handle: handle.write(...)``: the file appears under ``path`` only
    when the block finishes; any OSError becomes a one-line JetsonDetectError naming ``what`` and ``path``."""
    try:
        kind = os.stat(path).st_mode
    except OSError:
        kind = stat.S_IFREG  # a new file
    if stat.S_ISDIR(kind):
        raise JetsonDetectError("{}: cannot write {} (it is a folder); give a file path".format(path, what))
    if not stat.S_ISREG(kind):
        # a device or a pipe (/dev/null, /dev/stdout): written in place, since replacing it would destroy it
        try:
            with open(path, mode, encoding=encoding) as handle:
                yield handle
        except OSError as exc:
            raise write_error(what, path, exc) from None
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise write_error(what, path, exc) from None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise write_error(what, path, exc) from None
        raise
    _fsync_folder(folder)


def atomic_write_bytes(path: str, data: bytes, what: str = "the file", write: Optional[WriteFn] = None) -> None:
    """Write ``data`` as the whole new content of ``path`` (see ``atomic_output``); ``write`` replaces os.write."""
    with atomic_output(path, what) as handle:
        handle.flush()
        write_all(handle.fileno(), data, write)
