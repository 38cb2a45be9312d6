"""Caches of what the toolkit computed once: frames, kNN graphs, layouts, metric results; keyed by fingerprint strings, bounded in size."""
