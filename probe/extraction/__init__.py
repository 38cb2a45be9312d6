"""Extraction: datasets opened into a sample table, batches read and decoded, checkpoints run in passes into stores."""
