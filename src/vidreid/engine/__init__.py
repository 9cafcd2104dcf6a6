"""Training engine: the LightningModule (:mod:`.lit_module`), learning-rate schedulers, progress/epoch-log callbacks."""
