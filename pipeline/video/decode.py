"""Decode just the sampled frames of one clip with PyAV, or read them from a JPEG frame folder.

Runs inside DataLoader worker processes. A video is opened once: its frames are counted from the stream
header when that is trustworthy (a whole video that declares them), else by demuxing the clip's packets, which
are kept and decoded from memory; decoding stops at the last sampled frame. Every problem with a clip becomes a
ClipDecodeError naming the stage ("open" or "decode") so the extraction loop records it and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.datasets.base import Clip
from pipeline.video.frames import CROP_PLACES, VIDEO_INTERPOLATION, crop_offset, load_jpeg

Positions = Callable[[int], np.ndarray]  # frames available in the clip -> the positions to sample


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


def _frame_range(clip: Clip) -> int:
    if clip.start is None or clip.stop is None or clip.stop < clip.start:
        raise ClipDecodeError("open", f"frame range {clip.start}..{clip.stop} is empty")
    return int(clip.stop) - int(clip.start) + 1


def count_frames(clip: Clip) -> int:
    """Frames in the clip's segment: from the frame range, the stream header, or by demuxing packets."""
    path = _check_source(clip)
    if clip.is_frames:
        return _frame_range(clip)
    try:
        with av.open(str(path)) as container:
            return _count(path, container, clip)[0]
    except av.FFmpegError as exc:
        raise ClipDecodeError("open", f"{path}: {exc}") from None


def _count(path: Path, container: av.container.InputContainer, clip: Clip) -> tuple[int, list[av.Packet] | None]:
    """(frames, the clip's packets from the seek point on) of an open video; packets None when the header's
    count is used. WebM streams often report 0 frames and no duration, so packets are counted (no decoding)."""
    if not container.streams.video:
        raise ClipDecodeError("open", f"{path} has no video stream")
    stream = container.streams.video[0]
    if clip.start is None and stream.frames > 0:
        return int(stream.frames), None
    _seek(container, stream, clip.start)
    packets: list[av.Packet] = []
    count, end, reached_stop = 0, 0.0, False
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        seconds = None if packet.pts is None else float(packet.pts * stream.time_base)
        if clip.stop is not None and seconds is not None and seconds >= clip.stop:
            reached_stop = True
            break
        packets.append(packet)  # those before the start too: decoding begins at the keyframe sought
        if clip.start is not None and seconds is not None and seconds < clip.start:
            continue
        count += 1
        if seconds is not None:
            end = max(end, seconds + float((packet.duration or 0) * stream.time_base))
    _check_complete(path, container, clip, end, reached_stop)
    if count == 0:
        raise ClipDecodeError("open", f"{path}: no video packets in the clip's range")
    return count, packets


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


def read_frames(clip: Clip, positions: Positions, size: int, threads: int = 0, crops: int = 1) -> dict[int, np.ndarray]:
    """The frames at `positions(available)` (0-based within the segment) as {position: [crops, size, size, 3]
    uint8}, the first `crops` squares of frames.CROP_PLACES (1: the centre square); `threads` per video decoder
    (0: the library's choice)."""
    path = _check_source(clip)
    if clip.is_frames:
        return _read_jpegs(clip, sorted(set(positions(_frame_range(clip)).tolist())), size, crops)
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise ClipDecodeError("open", f"{path}: {exc}") from None
    with container:
        try:
            count, packets = _count(path, container, clip)
        except av.FFmpegError as exc:
            raise ClipDecodeError("open", f"{path}: {exc}") from None
        wanted = sorted(set(positions(count).tolist()))
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        if packets is not None:
            frames: Iterator[av.VideoFrame] = _from_packets(stream, packets)
        else:
            frames = container.decode(stream)
        return _decode(clip, frames, wanted, size, crops)


def read_positions(clip: Clip, positions: np.ndarray, size: int) -> dict[int, np.ndarray]:
    """The centre squares of the frames at fixed `positions` (e.g. the middle one for a figure): {position:
    [size, size, 3]}."""
    return {p: frame[0] for p, frame in read_frames(clip, lambda available: np.asarray(positions), size).items()}


def _read_jpegs(clip: Clip, wanted: list[int], size: int, crops: int) -> dict[int, np.ndarray]:
    folder, out = Path(clip.source), {}
    for pos in wanted:
        file = folder / clip.frame_template.format(int(clip.start) + pos)
        if not file.is_file():
            raise ClipDecodeError("open", f"missing frame {file}")
        try:
            out[pos] = load_jpeg(file, size, crops)
        except OSError as exc:
            raise ClipDecodeError("decode", f"{file}: {exc}") from None
    return out


def _from_packets(stream: av.video.stream.VideoStream, packets: list[av.Packet]) -> Iterator[av.VideoFrame]:
    for packet in packets:
        yield from stream.codec_context.decode(packet)
    yield from stream.codec_context.decode(None)  # flush the frames the decoder still holds


class SquareFrames:
    """Decoded frame -> [size, size, 3] uint8 in one libavfilter graph: a square (the centre one, or another of
    frames.CROP_PLACES along the long side) cut out first (no pixel
    that is cropped away is ever converted), converted to RGB at full resolution, then scaled in RGB with
    swscale's area filter (scaling before the conversion, on subsampled chroma, blurs colour edges). Rebuilt if
    the frame size changes mid-stream."""

    def __init__(self, size: int, place: str = "centre"):
        self.size, self.place = size, place
        self.graph: av.filter.Graph | None = None
        self.key: tuple[int, int, str] | None = None

    def _build(self, frame: av.VideoFrame) -> None:
        side = min(frame.width, frame.height)
        # Offsets rounded down to even: a crop at an odd pixel of subsampled (4:2:0) chroma shifts colour by half a
        # pixel against the luma; one pixel off the exact place costs nothing.
        left, top = (crop_offset(length, side, self.place) & ~1 for length in (frame.width, frame.height))
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                             time_base=frame.time_base or Fraction(1, 25)),
            graph.add("crop", f"{side}:{side}:{left}:{top}"),
            graph.add("format", "rgb24"),
            graph.add("scale", f"{self.size}:{self.size}:flags={VIDEO_INTERPOLATION}"),
            graph.add("buffersink"),
        ]  # fmt: skip
        for a, b in zip(nodes, nodes[1:]):
            a.link_to(b)
        graph.configure()
        self.graph, self.key = graph, (frame.width, frame.height, frame.format.name)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if (frame.width, frame.height, frame.format.name) != self.key:
            self._build(frame)
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


def _decode(
    clip: Clip, frames: Iterator[av.VideoFrame], wanted: list[int], size: int, crops: int
) -> dict[int, np.ndarray]:
    squares = [SquareFrames(size, place) for place in CROP_PLACES[:crops]]

    def to_array(frame: av.VideoFrame) -> np.ndarray:
        return np.stack([square(frame) for square in squares])

    out: dict[int, np.ndarray] = {}
    last = wanted[-1]
    index, previous = -1, None
    try:
        for frame in frames:
            seconds = frame.time
            if clip.start is not None and seconds is not None and seconds < clip.start:
                continue
            if clip.stop is not None and seconds is not None and seconds >= clip.stop:
                break
            index += 1
            previous = frame
            if index in wanted:
                out[index] = to_array(frame)
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
    tail = to_array(previous) if len(out) < len(wanted) else None
    return {pos: out.get(pos, tail) for pos in wanted}
