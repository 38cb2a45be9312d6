"""Cross-embodiment retrieval: FAISS indexes over a store's latents, the clip retriever, its evaluation, clip export."""
