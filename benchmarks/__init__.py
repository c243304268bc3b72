"""Benchmarks: skiplock side by side with a raw-SQL ceiling and its peers, reported as ratios.

Run ``python -m benchmarks`` (full) or ``python -m benchmarks --smoke`` (every workload, tiny sizes).
Never part of the test suite; no timing is ever asserted.
"""

from __future__ import annotations
