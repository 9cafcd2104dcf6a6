"""vidreid.video.reader on damaged video: a truncated copy and a partly overwritten copy of a synthetic MJPG AVI
whose frames carry their own index, so every yielded frame's number can be checked against its pixels."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest

pytest.importorskip("cv2")

from tests.video_synth import frame_number, numbered_frames, overwritten_copy, truncated_copy, write_video  # noqa: E402
from vidreid.video.reader import avi_frame_index, iter_frames, read_frames  # noqa: E402

N = 60


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("reader") / "clip.avi", numbered_frames(N))


def _read(path: Path, **kw):
    it = iter_frames(path, **kw)
    got = [(i, frame_number(f)) for i, f in it]
    return got, it.report


def test_intact_video_reads_every_frame_with_an_empty_report(clip, caplog):
    with caplog.at_level(logging.WARNING, logger="vidreid.video.reader"):
        got, rep = _read(clip)
    assert [i for i, _ in got] == list(range(N)) and all(i == k for i, k in got)
    assert (rep.declared, rep.frames_read, rep.last_frame, rep.missing, rep.skipped) == (N, N, N - 1, 0, [])
    assert not rep.damaged and rep.index_checked and not caplog.records


def test_truncated_video_reports_where_decoding_stopped(clip, tmp_path, caplog):
    bad = truncated_copy(clip, tmp_path / "cut.avi", 0.6)
    with caplog.at_level(logging.WARNING, logger="vidreid.video.reader"):
        got, rep = _read(bad)
    n = len(got)
    assert 0.4 * N < n < 0.7 * N, n  # the first 60 % of the bytes hold about 60 % of the frames
    assert [i for i, _ in got] == list(range(n))
    # the last frame's data is cut off (the decoder may fill it from the previous frame): check the others
    assert all(i == k for i, k in got[:-1]), [(i, k) for i, k in got if i != k]
    assert rep.stopped_early and rep.declared == N and rep.frames_read == n and rep.last_frame == n - 1
    assert rep.missing == N - n and rep.skipped == []
    assert len(caplog.records) == 1 and str(bad) in caplog.text and f"last frame decoded {n - 1}" in caplog.text
    assert f"{N - n} declared frames not read" in caplog.text
    assert rep.to_dict()["missing"] == N - n


def test_overwritten_middle_is_reported_as_skipped_frames_and_later_frames_keep_their_numbers(clip, tmp_path, caplog):
    """OpenCV's AVI demuxer drops the damaged frames without a word and numbers the next intact frame as the first
    lost one; the reader must give every frame its own number (its pixels say which it is) and list the gap."""
    bad = overwritten_copy(clip, tmp_path / "hole.avi", at=0.5, fraction=0.1)
    with caplog.at_level(logging.WARNING, logger="vidreid.video.reader"):
        got, rep = _read(bad)
    assert all(i == k for i, k in got), [(i, k) for i, k in got if i != k][:5]
    assert len(rep.skipped) == 1
    a, b = rep.skipped[0]
    assert 0.3 * N < a <= b < 0.8 * N and b - a + 1 >= 2
    assert [i for i, _ in got] == [i for i in range(N) if not a <= i <= b]
    assert (rep.last_frame, rep.frames_read, rep.missing, rep.stopped_early) == (N - 1, N - (b - a + 1), b - a + 1,
                                                                                 False)  # fmt: skip
    assert str(bad) in caplog.text and f"skipped frames {a}-{b}" in caplog.text


def test_stride_over_a_damaged_video_keeps_the_stride_grid(clip, tmp_path):
    bad = overwritten_copy(clip, tmp_path / "hole.avi", at=0.5, fraction=0.1)
    got, rep = _read(bad, stride=4, start=1)
    ((a, b),) = rep.skipped
    assert [i for i, _ in got] == [i for i in range(1, N, 4) if not a <= i <= b]
    assert all(i == k for i, k in got)


def test_undecodable_frame_is_stepped_over(clip, tmp_path):
    """A frame whose JPEG is destroyed (its chunk header intact) makes OpenCV's read return False; the old reader
    ended there, silently dropping the rest of the video."""
    data = bytearray(clip.read_bytes())
    movi, idx1 = data.find(b"movi"), data.find(b"idx1")
    ck, _, off, size = struct.unpack("<4sIII", data[idx1 + 8 + 16 * 20 : idx1 + 24 + 16 * 20])
    pos = movi + off if data[movi + off : movi + off + 4] == ck else off
    data[pos + 8 : pos + 8 + min(size, 400)] = bytes(min(size, 400))  # frame 20's JPEG header gone
    bad = tmp_path / "frame20.avi"
    bad.write_bytes(bytes(data))
    got, rep = _read(bad)
    assert [i for i, _ in got] == [i for i in range(N) if i != 20] and all(i == k for i, k in got)
    assert rep.skipped == [(20, 20)] and rep.missing == 1 and not rep.stopped_early


def test_capped_read_is_not_reported_as_damage(clip, caplog):
    with caplog.at_level(logging.WARNING, logger="vidreid.video.reader"):
        got, rep = _read(clip, stride=2, max_frames=5)
    assert [i for i, _ in got] == [0, 2, 4, 6, 8] and rep.capped and rep.missing == 0 and not caplog.records
    assert sorted(read_frames(clip, [3, 7])) == [3, 7]


def test_avi_index_lists_the_intact_frames(clip, tmp_path):
    assert avi_frame_index(clip) == (list(range(N)), N)
    intact, n = avi_frame_index(overwritten_copy(clip, tmp_path / "hole.avi", at=0.5, fraction=0.1))
    assert n == N and 0 < N - len(intact) < N // 2
    assert avi_frame_index(truncated_copy(clip, tmp_path / "cut.avi")) is None  # the index sits at the end


def test_read_span_ends_at_the_last_frame_decoded_only_when_decoding_stopped_early(clip, tmp_path):
    from vidreid.video.reader import read_span

    _, cut = _read(truncated_copy(clip, tmp_path / "cut.avi"))
    _, hole = _read(overwritten_copy(clip, tmp_path / "hole.avi"))
    assert read_span(cut, N) == cut.last_frame + 1 < N
    assert read_span(hole, N) == N and read_span(None, N) == N


def test_the_report_survives_its_json_form(clip, tmp_path):
    from vidreid.video.reader import ReadReport

    _, rep = _read(overwritten_copy(clip, tmp_path / "hole.avi"))
    assert ReadReport.from_dict(json.loads(json.dumps(rep.to_dict()))) == rep
