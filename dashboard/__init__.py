"""The Dash app for exploring a shared embedding space (reads stores; nothing imports it)."""
