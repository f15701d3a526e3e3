"""Decode just the sampled frames of one clip with PyAV (threaded), or read them from a JPEG frame folder.

Runs inside DataLoader worker processes. Every problem with a clip becomes a ClipDecodeError naming the
stage ("open" or "decode") so the extraction loop records it and goes on.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from pipeline.datasets.base import Clip
from pipeline.video.frames import center_crop, load_jpeg, scaled_size


class ClipDecodeError(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def _check_source(clip: Clip) -> Path:
    path = Path(clip.source)
    if not path.exists():
        raise ClipDecodeError("open", f"missing: {path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise ClipDecodeError("open", f"empty file: {path} has 0 bytes")
    return path


def count_frames(clip: Clip) -> int:
    """Frames in the clip's segment: from the frame range, the stream header, or by demuxing packets.

    WebM streams often report 0 frames and no duration, so packets are counted (demuxing, no decoding).
    """
    path = _check_source(clip)
    if clip.is_frames:
        if clip.start is None or clip.stop is None or clip.stop < clip.start:
            raise ClipDecodeError("open", f"frame range {clip.start}..{clip.stop} is empty")
        return int(clip.stop) - int(clip.start) + 1
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipDecodeError("open", f"{path} has no video stream")
            stream = container.streams.video[0]
            if clip.start is None and stream.frames > 0:
                return int(stream.frames)
            _seek(container, stream, clip.start)
            count, end, reached_stop = 0, 0.0, False
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                seconds = None if packet.pts is None else float(packet.pts * stream.time_base)
                if clip.start is not None and seconds is not None and seconds < clip.start:
                    continue
                if clip.stop is not None and seconds is not None and seconds >= clip.stop:
                    reached_stop = True
                    break
                count += 1
                if seconds is not None:
                    end = max(end, seconds + float((packet.duration or 0) * stream.time_base))
            _check_complete(path, container, clip, end, reached_stop)
    except av.FFmpegError as exc:
        raise ClipDecodeError("open", f"{path}: {exc}") from None
    if count == 0:
        raise ClipDecodeError("open", f"{path}: no video packets in the clip's range")
    return count


def _check_complete(
    path: Path, container: av.container.InputContainer, clip: Clip, end: float, reached_stop: bool
) -> None:
    """A stream that stops well short of its declared length (or of the segment) was cut off: a truncated file."""
    if clip.stop is not None:
        if not reached_stop and end < clip.stop - 0.5:
            raise ClipDecodeError(
                "open", f"{path}: video ends at {end:.2f} s, before the segment's stop at {clip.stop:.2f} s"
            )
        return
    declared = container.duration / av.time_base if container.duration else None
    if declared and end and end < declared - max(0.5, 0.1 * declared):
        raise ClipDecodeError("open", f"truncated: {path} holds {end:.2f} s of video but declares {declared:.2f} s")


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream, start: float | None) -> None:
    if start:
        container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)


def read_positions(clip: Clip, positions: np.ndarray, size: int) -> dict[int, np.ndarray]:
    """The frames at `positions` (0-based within the segment) as {position: [size, size, 3] uint8}."""
    wanted = sorted(set(int(p) for p in positions))
    if clip.is_frames:
        folder = Path(clip.source)
        out = {}
        for pos in wanted:
            file = folder / clip.frame_template.format(int(clip.start) + pos)
            if not file.is_file():
                raise ClipDecodeError("open", f"missing frame {file}")
            try:
                out[pos] = load_jpeg(file, size)
            except OSError as exc:
                raise ClipDecodeError("decode", f"{file}: {exc}") from None
        return out
    return _decode_video(clip, wanted, size)


def _to_array(frame: av.VideoFrame, size: int) -> np.ndarray:
    width, height = scaled_size(frame.width, frame.height, size)
    return center_crop(frame.to_ndarray(format="rgb24", width=width, height=height), size)


def _decode_video(clip: Clip, wanted: list[int], size: int) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    last = wanted[-1]
    index, previous = -1, None
    try:
        with av.open(clip.source) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            _seek(container, stream, clip.start)
            for frame in container.decode(stream):
                seconds = frame.time
                if clip.start is not None and seconds is not None and seconds < clip.start:
                    continue
                if clip.stop is not None and seconds is not None and seconds >= clip.stop:
                    break
                index += 1
                previous = frame
                if index in wanted:
                    out[index] = _to_array(frame, size)
                if index >= last:
                    break
    except av.FFmpegError as exc:
        # Partial features from a damaged file would pass silently as real ones: the clip is a failure.
        raise ClipDecodeError("decode", f"{clip.source}: {exc}") from None
    if previous is None:
        raise ClipDecodeError("decode", f"{clip.source}: no frames decoded")
    if index < last - 2:
        raise ClipDecodeError(
            "decode", f"truncated: {clip.source} decoded {index + 1} frames, expected at least {last + 1}"
        )
    # A packet count can exceed the decodable frames by a few (hidden frames): the last one stands in.
    tail = _to_array(previous, size) if len(out) < len(wanted) else None
    return {pos: out.get(pos, tail) for pos in wanted}
