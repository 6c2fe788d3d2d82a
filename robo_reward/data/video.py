"""Video files, the one place they are read and written here (PyAV).

:func:`iter_video` streams a file's frames (the frame store and the raw importer read videos
this way, so memory holds one frame); :func:`probe_video` checks a file without keeping frames;
:func:`write_mp4` writes the annotated review videos of ``eval-reward`` and ``eval-policy``,
each frame drawn by :func:`progress_frame`. Datasets' own
videos are written by LeRobot's dataset writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robo_reward.data.lerobot_io import DatasetError

RESIZE_MODES = ("crop", "letterbox")


def to_square(frames: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """(T, H, W, 3) -> (T, size, size, 3) without distorting the picture: ``crop`` takes the centred
    square of the shorter side, ``letterbox`` pads the shorter side with black; then area resize."""
    import cv2

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize: {mode!r}; expected one of {list(RESIZE_MODES)}")
    h, w = frames.shape[1:3]
    if h != w and mode == "crop":
        m = min(h, w)
        y, x = (h - m) // 2, (w - m) // 2
        frames = frames[:, y: y + m, x: x + m]
    elif h != w:
        m = max(h, w)
        pad = np.zeros((frames.shape[0], m, m, 3), frames.dtype)
        y, x = (m - h) // 2, (m - w) // 2
        pad[:, y: y + h, x: x + w] = frames
        frames = pad
    if frames.shape[1:3] == (size, size):
        return np.ascontiguousarray(frames)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def probe_video(path: Path) -> tuple[int, tuple[int, int], int]:
    """(frame count, (height, width), fps) of a video, every frame decoded (so a damaged file is
    found) and none kept."""
    import av

    n, size, fps = 0, (0, 0), 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = int(round(float(stream.average_rate))) if stream.average_rate else 0
            for f in container.decode(stream):
                n, size = n + 1, (f.height, f.width)
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise DatasetError(f"{path}: unreadable video ({type(e).__name__}: {e}); expected an mp4 with one "
                           "video stream") from e
    if n == 0:
        raise DatasetError(f"{path}: video has 0 frames; expected at least one")
    return n, size, fps


def iter_video(path: Path):
    """The frames of the first video stream, one (H, W, 3) uint8 array at a time."""
    import av

    try:
        with av.open(str(path)) as container:
            for f in container.decode(container.streams.video[0]):
                yield f.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise DatasetError(f"{path}: unreadable video ({type(e).__name__}: {e}); expected an mp4 with one "
                           "video stream") from e


def progress_frame(views: np.ndarray, progress: float, label: str, scale: int = 3) -> np.ndarray:
    """One review frame: ``views`` (H, W, 3), scaled up, over a bar of ``progress`` (skipped when
    NaN) and a text label."""
    import cv2

    h, w = views.shape[0] * scale, views.shape[1] * scale
    canvas = np.zeros((h + 24, w, 3), np.uint8)
    canvas[:h] = cv2.resize(views, (w, h), interpolation=cv2.INTER_NEAREST)
    if np.isfinite(progress):
        canvas[h + 4: h + 20, : int(progress * w)] = (40, 200, 80)
    cv2.putText(canvas, label, (4, h + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return canvas


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: int) -> None:
    """Encode equally sized RGB frames to an H.264 mp4 that browsers play (the HTML report links
    them); odd sizes are padded by a pixel. Parent directories are created."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = None
        for img in frames:
            h, w = img.shape[:2]
            if h % 2 or w % 2:
                img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
            if s is None:
                s = c.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
                s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        if s is not None:
            for pkt in s.encode():
                c.mux(pkt)
