"""Occluded-DukeMTMC-VideoReID: an occluded re-split of DukeMTMC-VideoReID (the Occluded-Duke video set
STICC reports on, docs/methods.md §4.4), in DukeMTMC-VideoReID's layout, parsed by
:class:`~vidreid.data.datasets.duke_video.DukeVideo`."""

from __future__ import annotations

from vidreid.data.datasets.duke_video import DukeVideo


class OccludedDukeVideo(DukeVideo):
    """Occluded-DukeMTMC-VideoReID: ``root/{train,query,gallery}/<pid4>/<tracklet4>/<frame>.jpg``.

    Same arguments (``root``, ``train_chunk``), statistics handling and errors as :class:`DukeVideo`;
    only the dataset name differs (conf/dataset/occluded_duke_video.yaml points at its own root).
    """

    dataset_name = "occluded_duke_video"
