"""Runs the plugin tests and exits with their status without tearing QGIS down.

PyQGIS can crash in interpreter shutdown (Qt objects collected after QgsApplication),
which would turn a passing run into exit 139; the verdict is taken from unittest and
the process leaves with os._exit once the output is flushed."""

import os
import sys
import unittest

suite = unittest.defaultTestLoader.discover(os.path.dirname(os.path.abspath(__file__)))
result = unittest.TextTestRunner(verbosity=2).run(suite)
sys.stdout.flush()
sys.stderr.flush()
ok = result.wasSuccessful() and not result.skipped and result.testsRun > 0
os._exit(0 if ok else 1)
