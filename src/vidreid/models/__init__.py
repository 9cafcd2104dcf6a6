"""Models: timm backbone wrapper, aggregators (one file per method), BNNeck head, ReIDNet."""
