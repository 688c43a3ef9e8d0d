"""Closed forms of local Hessians (paper digest, sections 4-5): ground truth and fast paths.

Each module states the paper's assumptions under which its formula is exact; the tests compare
every formula with the measured operators in float64.
"""

__all__: list[str] = []
