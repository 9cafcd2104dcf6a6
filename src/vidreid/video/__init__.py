"""From camera video to identities (``track.py``): one module per stage.

- :mod:`~vidreid.video.reader` — decode a video (OpenCV), frame stride.
- :mod:`~vidreid.video.detect` — person detectors behind :class:`~vidreid.video.detect.Detector` (HOG default).
- :mod:`~vidreid.video.track` — ByteTrack (``supervision``).
- :mod:`~vidreid.video.tracklets` — track table, tracklets, crops in the PRID ``multi_shot`` layout.
- :mod:`~vidreid.video.associate` — tracklets -> identities (constrained agglomerative clustering).
- :mod:`~vidreid.video.count` — distinct individuals per time window (STICC's PETS2009 demo), CSV + plot.
- :mod:`~vidreid.video.render` — annotated mp4 / GIF / PNG stills.
- :mod:`~vidreid.runs.track` — ``track.py``'s job wiring the stages.
"""
