"""What the dashboard shows, computed before the server starts; and the view state in the URL.

``prepare(stores)`` opens every store (one per checkpoint), lays out each layer in
2-D (cached, aligned across checkpoints so a point's move means something), builds a
FAISS index over the human rows for nearest-clip queries, computes the metrics
records and registers the media files. Callbacks only read a :class:`Prepared`.

``ViewState`` is what the URL holds: checkpoint, layer, colour, filters, the selected
point and highlighted clip (by ``sample_id``, stable across checkpoints) and the
checkpoints shown side by side. ``decode_state`` never fails: unknown or stale values
fall back to defaults and come back as notices for the user.

One concept a module: ``viewstate`` (the URL state), ``prepared`` (the data classes),
``loading`` (:func:`prepare`), ``neighbours`` (nearest-clip search), ``metrics_panel``
(metrics records and coverage advice) and ``events`` (events to state).
"""
