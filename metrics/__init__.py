"""Alignment metrics: pure functions of float32 arrays and label arrays.

This package imports numpy, scipy, scikit-learn, POT and faiss only: never torch,
``probe`` or ``dashboard``.
"""
