"""`python -m cnn_core ...` (and the `cnn-explorer` command) run the CLI."""

import os
import sys

from .cli import main


class _Output:
    """Standard output that remembers whether writing to it failed, so that only its own failures (a full disk
    under `> file`) are reported as the output's, not a checkpoint's or a cache's."""

    def __init__(self, stream) -> None:
        self.stream, self.failed = stream, False

    def write(self, text: str) -> int:
        return self._watched(self.stream.write, text)

    def flush(self) -> None:
        self._watched(self.stream.flush)

    def _watched(self, action, *args):
        try:
            return action(*args)
        except OSError:
            self.failed = True
            raise

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def run() -> int:
    """`cli.main`, with its output's end handled: a reader that stops early (`... | head -1`) ends the run
    quietly, as Python's documentation advises for SIGPIPE, and output that cannot be written (a full disk)
    is one line and status 2, not a traceback."""
    output = sys.stdout = _Output(sys.stdout)
    try:
        status = main()
        output.flush()
        return status
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), output.fileno())  # nothing left to flush at exit
        return 1
    except OSError as exc:
        if not output.failed:  # a file the command itself writes: its own error
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), output.fileno())
        print(f"error: the output could not be written ({exc.strerror or exc}).", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
