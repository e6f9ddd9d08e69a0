"""Decoding videos into the frames of HCRN/DualVGR clips, one pass through each video with PyAV.

Clip sampling (docs/data_formats.md): C clip centres at ``linspace(0, n_frames, C + 2)[1:C+1]`` (integer), each clip the F
consecutive frames ``centre - F//2 ... centre + (F-1)//2``; indices outside ``[0, n_frames)`` are clamped, which repeats
the first or last frame. ``n_frames`` is the number of frames that actually decode.

Only the frames the clips need are kept, converted to RGB at their native resolution as they stream past (resizing
is left to the extractor, on its device: FFmpeg's own bicubic scaler costs several times more than decoding); the
whole video is never held in memory. The frame count the container declares is used to choose them; when decoding
finds a different count (truncated file, wrong header) and the kept frames do not cover the clips of the true count,
the video is decoded a second time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch


# Largest frame decoded (4K UHD): the size is checked from the stream header before decoding and on every frame
# before it is converted, so a small file declaring a huge canvas (a 959-byte GIF of 6000x6000: 5 GB) is refused
# instead of allocated. Larger videos must be scaled down first (e.g. ffmpeg -vf scale=-2:1080).
MAX_FRAME_PIXELS = 3840 * 2160


class VideoDecodeError(Exception):
    """A video yields no usable frame; ``reason`` says why (missing file, empty file, not a video, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class DecodedClips:
    """The distinct frames of a video's clips and how the clips index them.

    frames: uint8 (U, H, W, 3) RGB at the video's resolution, U <= C * F distinct frames in increasing frame order.
    index: int64 (C, F), clip c's frame f is ``frames[index[c, f]]``.
    frame_numbers: int64 (U,), the video frame number of each entry of ``frames``.
    n_frames: frames the video decoded to.
    corrupt_packets: packets that failed to decode and were skipped.
    declared_frames: frames the container announces (0: unknown); declared_exact: from the header's frame count
    (else an estimate from duration x frame rate, which may be off by one).
    """
    frames: np.ndarray
    index: np.ndarray
    frame_numbers: np.ndarray
    n_frames: int
    corrupt_packets: int
    declared_frames: int = 0
    declared_exact: bool = True

    def clips(self) -> np.ndarray:
        """uint8 (C, F, H, W, 3): every clip's frames, duplicates included."""
        return self.frames[self.index]

    def partial_reason(self) -> str:
        """"" for a video that decoded all its frames; else why it is partial (truncated or damaged file: its clips
        were sampled over fewer frames than the video has). An estimated count gets one frame of slack."""
        slack = 0 if self.declared_exact else 1
        if self.n_frames + slack < self.declared_frames:
            return f"partial: decoded {self.n_frames} of {self.declared_frames} declared frames"
        return ""


def clip_frame_indices(n_frames: int, num_clips: int, num_frames: int) -> np.ndarray:
    """int64 (num_clips, num_frames): the frame number of every clip frame of a video of ``n_frames`` frames."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got n_frames={n_frames}")
    centres = np.linspace(0, n_frames, num_clips + 2)[1:num_clips + 1].astype(np.int64)
    offsets = np.arange(num_frames, dtype=np.int64) - num_frames // 2
    return np.clip(centres[:, None] + offsets[None, :], 0, n_frames - 1)


def encode_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str | None = None) -> None:
    """Write uint8 RGB frames (T, H, W, 3), H and W even, as a video (codec by extension: .avi mpeg4, else H.264)."""
    path = Path(path)
    codec = codec or ("mpeg4" if path.suffix == ".avi" else "libx264")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000  # near-lossless at test sizes, so decoded pixels stay close to the input
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise VideoDecodeError("missing file") from None
    except av.error.InvalidDataError:
        raise VideoDecodeError("not a video (FFmpeg: invalid data)") from None
    except (av.error.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"cannot open: {e}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError("no video stream")
    return container


def _declared_frame_count(stream) -> tuple[int, bool]:
    """(frames the container header announces, True), or (an estimate from duration and rate, False), or (0, False)
    when unknown."""
    if stream.frames > 0:
        return int(stream.frames), True
    if stream.duration and stream.time_base and stream.average_rate:
        return max(int(round(float(stream.duration * stream.time_base * stream.average_rate))), 0), False
    return 0, False


def _check_frame_size(width: int, height: int, verb: str) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(f"the video {verb} {width}x{height} frames, more than the {MAX_FRAME_PIXELS:,} pixels "
                               "a frame may have here (scale it down first)")


def _decode_pass(path: Path, wanted: set[int] | None, num_clips: int,
                 num_frames: int) -> tuple[dict[int, np.ndarray], int, int, tuple[int, bool]]:
    """Stream through the video once, keeping the frames in ``wanted`` (None: those the declared count implies).

    Returns ({frame number: uint8 (H, W, 3)}, decoded frame count, packets that failed to decode, the declared
    frame count as ``_declared_frame_count`` gives it). A frame whose size differs from the first kept one (a
    mid-stream resolution change) is scaled to that size.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        _check_frame_size(stream.codec_context.width or 0, stream.codec_context.height or 0, "declares")
        declared = _declared_frame_count(stream)
        if wanted is None:
            wanted = (set(clip_frame_indices(declared[0], num_clips, num_frames).ravel().tolist()) if declared[0]
                      else set())
        kept, count, corrupt, size = {}, 0, 0, None
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    corrupt += 1  # a damaged packet: skip it, keep what decodes after it
                    continue
                for frame in decoded:
                    _check_frame_size(frame.width, frame.height, "has")
                    if count in wanted:
                        size = size or (frame.width, frame.height)
                        kept[count] = frame.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                                       interpolation="BICUBIC")
                    count += 1
        except av.error.FFmpegError:
            corrupt += 1  # the container itself breaks off (truncated file): keep the frames decoded so far
    finally:
        container.close()
    return kept, count, corrupt, declared


def decode_clips(path: str | Path, num_clips: int, num_frames: int) -> DecodedClips:
    """Decode the frames of a video's ``num_clips`` clips of ``num_frames`` frames (RGB, native resolution).

    Raises VideoDecodeError (with a reason) when the video has no decodable frame.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError("missing file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError("empty file")
    kept, count, corrupt, (declared, exact) = _decode_pass(path, None, num_clips, num_frames)
    if count == 0:
        raise VideoDecodeError("no decodable frame")
    index = clip_frame_indices(count, num_clips, num_frames)
    frame_numbers = np.unique(index)
    if not set(frame_numbers.tolist()) <= kept.keys():
        kept, recount, corrupt, _ = _decode_pass(path, set(frame_numbers.tolist()), num_clips, num_frames)
        if recount != count:
            raise VideoDecodeError(f"decoding is not repeatable: {count} frames, then {recount}")
    frames = np.stack([kept[number] for number in frame_numbers.tolist()])
    return DecodedClips(frames=frames, index=np.searchsorted(frame_numbers, index), frame_numbers=frame_numbers,
                        n_frames=count, corrupt_packets=corrupt, declared_frames=declared, declared_exact=exact)


class ClipDecodingDataset(torch.utils.data.Dataset):
    """Decodes one video per item (meant for DataLoader workers). Never raises for a bad video.

    Item: dict with ``position`` (index into ``paths``), ``frames`` uint8 tensor (U, H, W, 3), ``index`` int64 tensor
    (C, F), ``n_frames``, ``error`` ("" when decoded; else the reason, with ``frames`` of shape (0, 0, 0, 3)) and
    ``partial`` ("" unless the video decoded fewer frames than it declares: ``DecodedClips.partial_reason``).
    """

    def __init__(self, paths: list[Path], num_clips: int, num_frames: int):
        self.paths = list(paths)
        self.num_clips, self.num_frames = num_clips, num_frames

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> dict:
        try:
            decoded = decode_clips(self.paths[position], self.num_clips, self.num_frames)
        except VideoDecodeError as e:
            return self._failure(position, e.reason)
        except Exception as e:  # an unforeseen decoder failure must cost one video, not the run
            return self._failure(position, f"decoding failed: {type(e).__name__}: {e}")
        return {"position": position, "frames": torch.from_numpy(decoded.frames),
                "index": torch.from_numpy(decoded.index), "n_frames": decoded.n_frames, "error": "",
                "partial": decoded.partial_reason()}

    def _failure(self, position: int, reason: str) -> dict:
        return {"position": position, "frames": torch.zeros(0, 0, 0, 3, dtype=torch.uint8),
                "index": torch.zeros(self.num_clips, self.num_frames, dtype=torch.int64), "n_frames": 0,
                "error": reason, "partial": ""}
