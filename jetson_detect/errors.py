"""The one exception type of the project.

Every failure a user can cause (a bad file, a missing camera, a wrong option) is raised as ``JetsonDetectError``
with a message that names the file, device or field and says what to do. The CLI prints it on one line and exits
non-zero; anything else escaping is a bug and keeps its traceback.
"""


EXIT_USER_ERROR = 2
EXIT_BAD_CONFIG = 78  # sysexits' EX_CONFIG: the systemd unit does not restart on it (RestartPreventExitStatus=)


class JetsonDetectError(Exception):
    """A problem the user can fix, with a one-line message that says how; ``exit_code`` is the CLI's exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR) -> None:
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code
