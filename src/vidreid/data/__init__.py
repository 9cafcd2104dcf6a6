"""Data: dataset parsers, tracklet records, clip sampling, identity samplers, transforms, datamodule."""

from vidreid.data.tracklet import Tracklet

__all__ = ["Tracklet"]
