"""Synthetic corpus generators (DICOM and text) for tests, benchmarks and the demo.

Nothing in the library imports this package.
"""
