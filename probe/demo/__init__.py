"""The demo: the whole pipeline on the built-in world, as one function with a typed config."""
