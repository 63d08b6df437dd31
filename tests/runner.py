"""Runs a test script's unittest cases and ends with the line CI reads.

Every Python test here finishes with `N passed, M failed` (and `, S skipped` when any were),
counted the same way; import this module from the script's own folder.
"""

import sys
import unittest


def run(module_name: str) -> int:
    """Runs every TestCase of the module; returns the process exit code."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_name])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    line = f"{result.testsRun - failed - skipped} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return 0 if failed == 0 else 1
