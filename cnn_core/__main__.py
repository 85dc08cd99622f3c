"""`python -m cnn_core ...` (and the `cnn-explorer` command) run the CLI."""

import os
import sys

from .cli import main


def run() -> int:
    """`cli.main`, with its output's end handled: a reader that stops early (`... | head -1`) ends the run
    quietly, as Python's documentation advises for SIGPIPE, and output that cannot be written (a full disk)
    is one line and status 2, not a traceback."""
    try:
        status = main()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 1
    except OSError as exc:
        if exc.filename is not None:  # a file the command itself reads or writes: not its output
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"error: the output could not be written ({exc.strerror or exc}).", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
