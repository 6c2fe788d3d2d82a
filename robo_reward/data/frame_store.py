"""The decoded-frame cache on disk: every frame of a dataset at model resolution, built once,
reused by every later run, rebuilt when the dataset or the resolution changes.

A store is one ``.npy`` file of shape (N, V, H, W, 3) uint8 (N frames in episode order, V
cameras), so ``np.load(path, mmap_mode="r")`` opens it anywhere. Reads go through ``pread`` at
the row's offset rather than a mapping: the bytes come from the kernel's page cache, which is
shared and reclaimable, so the process's resident memory stays at one batch whatever the
dataset's size (a mapping would count every page it ever touched as resident).

Where: ``$ROBO_REWARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/robo-reward/frames``, else
``~/.cache/robo-reward/frames``. The file's name is ``<slot>-<content>.npy``: the slot hashes
the dataset path, cameras, size and resize mode; the content hashes what the frames are read
from (``meta/info.json``, the episodes table, the videos' names, sizes and mtimes). A new
content in a slot replaces the old file. A build writes a ``.partial`` file and renames it when
complete, so a killed build is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


def cache_dir() -> Path:
    if os.environ.get("ROBO_REWARD_CACHE_DIR"):
        return Path(os.environ["ROBO_REWARD_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "robo-reward" / "frames"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _stat(p: Path, root: Path) -> list:
    st = p.stat()
    return [str(p.relative_to(root)), st.st_size, st.st_mtime_ns]


def store_path(root: Path, cameras: list[str], size: int, resize: str) -> Path:
    """Where the frames of ``root`` at (cameras, size, resize) are cached, for the dataset as it is
    now (its content is part of the name)."""
    root = Path(root).resolve()
    slot = _digest([FORMAT_VERSION, str(root), list(cameras), int(size), resize])
    sources = [root / "meta" / "info.json", *sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))]
    for cam in cameras:
        sources += sorted((root / "videos" / f"observation.images.{cam}").glob("chunk-*/file-*.mp4"))
    content = _digest([_stat(p, root) for p in sources if p.exists()])
    return cache_dir() / f"{slot}-{content}.npy"


class FrameStore:
    """Read-only (N, V, H, W, 3) uint8 frames in a ``.npy`` file; indexed like an array on its
    first axis (an int, a slice with step 1, or an integer array of any shape), returning arrays."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype != np.uint8 or len(shape) != 5:
            raise ValueError(f"{self.path}: not a frame store (shape {shape}, dtype {dtype}); delete it to rebuild")
        self.shape, self.dtype = tuple(shape), np.dtype(np.uint8)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape))
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def _read(self, start: int, n: int, out: np.ndarray) -> None:
        view = memoryview(out.reshape(-1))
        got = os.preadv(self._fd, [view], self.offset + start * self.row_bytes)
        if got != n * self.row_bytes:
            raise OSError(f"{self.path}: short read at row {start} ({got} of {n * self.row_bytes} bytes); "
                          "the cache file is damaged, delete it to rebuild")

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("FrameStore slices take step 1")
            out = np.empty((max(0, stop - start), *self.row_shape), np.uint8)
            if len(out):
                self._read(start, len(out), out)
        elif np.isscalar(key) or (isinstance(key, np.ndarray) and key.ndim == 0):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"row {i} out of range for {len(self)} frames")
            out = np.empty((1, *self.row_shape), np.uint8)
            self._read(i % len(self), 1, out)
            out = out[0]
        else:
            idx = np.asarray(key, dtype=np.int64)
            flat = idx.reshape(-1) % max(1, len(self))
            if len(flat) and (flat.min() < 0 or flat.max() >= len(self)):
                raise IndexError(f"rows out of range for {len(self)} frames")
            out = np.empty((len(flat), *self.row_shape), np.uint8)
            i = 0
            while i < len(flat):  # one read per run of consecutive rows
                j = i + 1
                while j < len(flat) and flat[j] == flat[j - 1] + 1:
                    j += 1
                self._read(int(flat[i]), j - i, out[i:j])
                i = j
            out = out.reshape(*idx.shape, *self.row_shape)
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


class StoreWriter:
    """Builds a store: ``put(row, view, frame)`` in any order, then ``commit()``; dropped without
    a commit, it leaves nothing behind."""

    def __init__(self, path: Path, shape: tuple[int, ...], meta: dict):
        self.path, self.shape, self.meta = Path(path), tuple(shape), meta
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.partial")
        mm = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8, shape=self.shape)
        self.offset = int(mm.offset)
        del mm
        self.view_bytes = int(np.prod(self.shape[2:]))
        self.row_bytes = self.view_bytes * self.shape[1]
        self._fd = os.open(self.tmp, os.O_WRONLY)

    def put(self, row: int, view: int, frame: np.ndarray) -> None:
        data = np.ascontiguousarray(frame, dtype=np.uint8)
        os.pwrite(self._fd, data.tobytes(), self.offset + row * self.row_bytes + view * self.view_bytes)

    def commit(self) -> FrameStore:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        slot = self.path.name.split("-")[0]
        for old in self.path.parent.glob(f"{slot}-*.npy"):  # earlier contents of this slot
            if old != self.path:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)
        os.replace(self.tmp, self.path)
        self.path.with_suffix(".json").write_text(json.dumps(self.meta, indent=2))
        return FrameStore(self.path)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.tmp.unlink(missing_ok=True)
