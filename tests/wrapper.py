"""Runs the program under test, inside $TAPEGRAD_WRAPPER when that is set.

TAPEGRAD_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full ..." runs every tapegrad
command of the CLI tests under valgrind (tools/setup.sh test does, as its third pass). A command
that exits with the wrapper's --error-exitcode fails its test with the wrapper's report, whatever
the test expected; timeouts grow by TIMEOUT_SCALE. TAPEGRAD_QUICK=1 skips the tests marked
@slow (long training runs), which a 30 times slower wrapper would make too long.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

WRAPPER = shlex.split(os.environ.get("TAPEGRAD_WRAPPER", ""))
if WRAPPER:  # found now: a test may run tapegrad with a PATH that lacks it
    if not shutil.which(WRAPPER[0]):
        sys.exit(f"TAPEGRAD_WRAPPER: {WRAPPER[0]} is not installed "
                 "(tools/setup.sh test installs valgrind)")
    WRAPPER[0] = shutil.which(WRAPPER[0])
_exit = re.search(r"--error-exitcode=(\d+)", " ".join(WRAPPER))
ERROR_EXIT = int(_exit.group(1)) if _exit else None
TIMEOUT_SCALE = 30 if WRAPPER else 1
QUICK = os.environ.get("TAPEGRAD_QUICK") == "1"


def run(program, args, *, timeout, **kwargs):
    """subprocess.run of `program args` (text, output captured), wrapped if asked."""
    r = subprocess.run([*WRAPPER, program, *args], capture_output=True, text=True,
                       timeout=timeout * TIMEOUT_SCALE, **kwargs)
    if ERROR_EXIT is not None and r.returncode == ERROR_EXIT:
        raise AssertionError(f"{WRAPPER[0]} reports errors in tapegrad {shlex.join(args)}:\n"
                             f"{r.stderr}")
    return r


def slow(test):
    """Marks a test that a 30 times slower wrapper would make too long."""
    return unittest.skipIf(QUICK, "slow: skipped with TAPEGRAD_QUICK=1")(test)


class TempDirTest(unittest.TestCase):
    """A test case that runs each test in a fresh temporary directory, self.dir."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.dir, *parts)
