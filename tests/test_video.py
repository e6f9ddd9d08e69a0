"""Clip sampling (docs/data_formats.md) and PyAV decoding of real, tiny videos whose frames encode their own index."""
import av
import numpy as np
import pytest

from preprocess.video import ClipDecodingDataset, VideoDecodeError, clip_frame_indices, decode_clips, encode_video

SIZE = 64  # frame size
BITS = 8


def index_frames(n: int) -> np.ndarray:
    """uint8 (n, 64, 64, 3): frame i shows the bits of i as 8 black/white vertical stripes (bit b = stripe b)."""
    frames = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    stripe = SIZE // BITS
    for i in range(n):
        for bit in range(BITS):
            if (i >> bit) & 1:
                frames[i, :, bit * stripe:(bit + 1) * stripe] = 255
    return frames


def read_indices(frames: np.ndarray) -> np.ndarray:
    """Frame numbers encoded in decoded frames (..., H, W, 3) of any size: read the middle of each stripe."""
    width = frames.shape[-2]
    columns = [int((bit + 0.5) * width / BITS) for bit in range(BITS)]
    bits = frames[..., frames.shape[-3] // 2, columns, :].mean(-1) > 127  # (..., BITS)
    return (bits * (1 << np.arange(BITS))).sum(-1)


def test_clip_centres_and_padding_hand_computed():
    # n=40, C=8: linspace(0, 40, 10) = 0, 4.44, 8.89, 13.3, 17.8, 22.2, 26.7, 31.1, 35.6, 40
    #   -> centres 4 8 13 17 22 26 31 35
    indices = clip_frame_indices(40, 8, 16)
    assert indices.shape == (8, 16)
    assert indices[:, 8].tolist() == [4, 8, 13, 17, 22, 26, 31, 35]  # frame F//2 of each clip is its centre
    assert indices[0].tolist() == [0] * 5 + list(range(1, 12))  # 4-8 .. 4+7, the 4 negatives repeat frame 0
    assert indices[7].tolist() == list(range(27, 40)) + [39] * 3  # 35-8 .. 35+7, 40..42 repeat frame 39
    # n=5, C=3: linspace(0, 5, 5) = 0, 1.25, 2.5, 3.75, 5 -> centres 1 2 3; F=8 runs past both ends
    assert clip_frame_indices(5, 3, 8).tolist() == [[0, 0, 0, 0, 1, 2, 3, 4],
                                                    [0, 0, 0, 1, 2, 3, 4, 4],
                                                    [0, 0, 1, 2, 3, 4, 4, 4]]
    assert clip_frame_indices(1, 2, 3).tolist() == [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        clip_frame_indices(0, 2, 3)


@pytest.mark.parametrize("name", ["clip.avi", "clip.mp4"])
def test_decoded_clips_hold_the_sampled_frames(tmp_path, name):
    path = tmp_path / name
    encode_video(path, index_frames(45))
    decoded = decode_clips(path, num_clips=4, num_frames=8)
    expected = clip_frame_indices(45, 4, 8)
    assert decoded.n_frames == 45 and decoded.corrupt_packets == 0
    assert decoded.frames.shape == (len(np.unique(expected)), SIZE, SIZE, 3) and decoded.frames.dtype == np.uint8
    assert decoded.frame_numbers.tolist() == np.unique(expected).tolist()
    np.testing.assert_array_equal(read_indices(decoded.clips()), expected)  # pixels really are those frames


def test_short_video_repeats_its_first_and_last_frames(tmp_path):
    encode_video(tmp_path / "short.avi", index_frames(3))
    decoded = decode_clips(tmp_path / "short.avi", num_clips=2, num_frames=6)
    # centres int(linspace(0, 3, 4)[1:3]) = 1, 2; frames centre-3 .. centre+2, clamped to 0..2
    assert read_indices(decoded.clips()).tolist() == [[0, 0, 0, 1, 2, 2], [0, 0, 1, 2, 2, 2]]
    assert decoded.frames.shape[0] == 3


def _packet_ends(path) -> list[int]:
    with av.open(str(path)) as container:
        return [packet.pos + packet.size for packet in container.demux(container.streams.video[0]) if packet.size]


def test_truncated_video_keeps_its_decodable_frames(tmp_path):
    """The header still announces 60 frames: sampling must follow the 31 frames that really decode."""
    full = tmp_path / "full.avi"
    encode_video(full, index_frames(60))
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(full.read_bytes()[:_packet_ends(full)[30]])  # cut after the 31st frame's packet
    decoded = decode_clips(truncated, num_clips=4, num_frames=8)
    assert decoded.n_frames == 31
    np.testing.assert_array_equal(read_indices(decoded.clips()), clip_frame_indices(31, 4, 8))
    truncated.write_bytes(full.read_bytes()[:_packet_ends(full)[30] - 10])  # cut inside a packet: no crash either
    assert 25 <= decode_clips(truncated, 4, 8).n_frames <= 31


def test_broken_files_raise_with_a_reason(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    encode_video(tmp_path / "whole.mp4", index_frames(20))
    (tmp_path / "cut.mp4").write_bytes((tmp_path / "whole.mp4").read_bytes()[:800])  # index (moov) lost
    reasons = {}
    for name in ["missing.mp4", "empty.mp4", "garbage.mp4", "cut.mp4"]:
        with pytest.raises(VideoDecodeError) as error:
            decode_clips(tmp_path / name, 2, 4)
        reasons[name] = error.value.reason
    assert reasons["missing.mp4"] == "missing file" and reasons["empty.mp4"] == "empty file"
    assert reasons["garbage.mp4"].startswith("not a video") and reasons["cut.mp4"].startswith("not a video")


def test_dataset_items_never_raise(tmp_path):
    encode_video(tmp_path / "ok.avi", index_frames(10))
    dataset = ClipDecodingDataset([tmp_path / "ok.avi", tmp_path / "gone.avi"], 2, 4)
    good, bad = dataset[0], dataset[1]
    assert good["error"] == "" and good["n_frames"] == 10
    np.testing.assert_array_equal(read_indices(good["frames"][good["index"]].numpy()), clip_frame_indices(10, 2, 4))
    assert bad["error"] == "missing file" and bad["frames"].shape == (0, 0, 0, 3)


def test_frames_larger_than_the_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    """A 959-byte GIF declaring a 6000x6000 screen took 5.1 GB in extraction. The frame size is checked from the
    stream header before any frame is decoded (here with a small limit and a 600x500 screen, so that a broken check
    allocates only a few MB)."""
    import io
    import struct

    from PIL import Image

    import preprocess.video as video
    buffer = io.BytesIO()
    Image.new("P", (2, 2)).save(buffer, format="GIF")
    gif = bytearray(buffer.getvalue())
    gif[6:10] = struct.pack("<HH", 600, 500)  # the logical screen the decoder allocates for every frame
    (tmp_path / "screen.gif").write_bytes(bytes(gif))
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 100 * 100)
    converted = []
    monkeypatch.setattr(av.VideoFrame, "to_ndarray", lambda *a, **k: converted.append(1))
    with pytest.raises(VideoDecodeError, match=r"declares 600x500 frames, more than the 10,000 pixels"):
        decode_clips(tmp_path / "screen.gif", 2, 2)
    assert not converted
    encode_video(tmp_path / "small.mp4", index_frames(4))  # 64x64 = 4,096 pixels: within the limit
    monkeypatch.undo()
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 64 * 64)
    assert decode_clips(tmp_path / "small.mp4", 2, 2).frames.shape[1:] == (64, 64, 3)
