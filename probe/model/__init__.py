"""The model side: loading checkpoints, adapters from batches to model inputs, hooks on layers, the extractor."""
