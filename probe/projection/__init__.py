"""2-D layouts of store layers (UMAP, PCA, aligned UMAP), warm-started along a series, cached, and exported."""
