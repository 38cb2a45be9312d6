"""The latent store (latents, sample table, manifest), importing precomputed latents, and series of checkpoints."""
