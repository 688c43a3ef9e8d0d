"""Training by back-matching propagation and scale-amended SGD (paper digest, sections 2 and 5)."""

from hessiankit.optim.backmatching import BackMatchingPropagation, BackMatchingStep

__all__ = ["BackMatchingPropagation", "BackMatchingStep"]
