"""vidreid: a Hydra + PyTorch Lightning experiment suite for video-based person re-identification."""

__version__ = "0.1.0"

__all__ = ["__version__"]
