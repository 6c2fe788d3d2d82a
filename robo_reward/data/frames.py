"""Training data for the reward model: decode each video once into a uint8 frame cache, attach
SARM labels, and sample causal windows (forward or rewound).

Decoding runs at ~1-2k frames/s with PyAV (dav1d) at 64x64, far too slow to repeat every step,
so the whole dataset is decoded once, at model resolution, into an on-disk store
(:mod:`robo_reward.data.frame_store`) that later runs reuse; resident memory does not grow with
the dataset.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from robo_reward.data.frame_store import FrameStore, StoreWriter, store_path
from robo_reward.data.labels import AnnotationError, Segments, episode_progress
from robo_reward.data.lerobot_io import DatasetError, open_metadata, read_frame_columns
from robo_reward.data.video import iter_video, to_square
from robo_reward.utils import Choice


class Labels(Choice):
    """Which labels the frame cache attaches: the SARM stages when annotated (``auto``), the stages
    or an error (``sparse``), or one stage with linear progress (``linear``)."""

    AUTO = "auto"
    SPARSE = "sparse"
    LINEAR = "linear"


@dataclass
class EpisodeLabels:
    index: int
    start: int  # first row in the frame cache
    length: int
    stage: np.ndarray
    tau: np.ndarray
    progress: np.ndarray
    success: bool
    quality: str


@dataclass
class FrameCache:
    root: Path
    cameras: list[str]
    frames: FrameStore | np.ndarray  # (N, V, H, W, 3) uint8, on disk (see frame_store)
    episodes: list[EpisodeLabels]
    stage_names: list[str]
    proportions: list[float]
    fps: int
    has_annotations: bool
    state: np.ndarray | None = None  # (N, S) float32 observation.state, when asked for
    success_known: bool = True  # False: the dataset records no success flag (every episode counted one)

    def episode_frames(self, ep: EpisodeLabels) -> np.ndarray:
        return self.frames[ep.start: ep.start + ep.length]

    def episode_state(self, ep: EpisodeLabels) -> np.ndarray | None:
        return None if self.state is None else self.state[ep.start: ep.start + ep.length]


def load_frame_cache(root: str | Path, cameras: list[str], size: int = 64, labels: str = "auto",
                     progress: bool = True, state: bool = False, resize: str = "crop") -> FrameCache:
    """Decode ``cameras`` of every episode and compute per-frame labels.

    ``labels``: ``sparse`` needs the SARM annotations (error if absent); ``linear`` ignores them
    (one stage, linear progress); ``auto`` uses them when present. ``state``: also read
    ``observation.state`` of every frame (for a ``use_state`` model).
    """
    root = Path(root)
    meta, eps = read_meta(root, cameras)
    props_path = root / "meta" / "temporal_proportions_sparse.json"
    annotated = props_path.exists() and "sparse_subtask_names" in eps.columns
    if labels == "sparse" and not annotated:
        raise AnnotationError(f"{root}: stage labels asked for (labels=sparse) but the dataset has no SARM "
                              f"annotations ({props_path.name} or sparse_subtask_* columns missing); "
                              "use labels=linear or annotate the dataset")
    use_stages = annotated and labels != "linear"
    if use_stages:
        props = json.loads(props_path.read_text())
        stage_names, proportions = list(props), [float(v) for v in props.values()]
    else:
        stage_names, proportions = ["task"], [1.0]
    starts = np.concatenate([[0], np.cumsum(eps["length"].to_numpy())[:-1]]).astype(int)
    eps, success_known = episode_success(root, meta, eps)
    frames = decode_episodes(root, meta, eps, starts, cameras, size, progress, resize)
    episodes = [episode_labels(root, rec, int(start), use_stages, stage_names, proportions, int(meta.fps))
                for rec, start in zip(eps.to_dict("records"), starts, strict=True)]
    states = _load_state(root, meta, eps) if state else None
    return FrameCache(root, list(cameras), frames, episodes, stage_names, proportions, int(meta.fps), use_stages,
                      states, success_known)


def episode_success(root: Path, meta, eps: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Each episode's success flag: our ``success`` column, else LeRobot's per-frame ``next.success``
    (any frame) or a final ``next.reward`` above 0; else unknown (every episode counted a success,
    with a warning, and AUROC left out). Returns the episodes table with ``success`` and whether it
    is known."""
    if "success" in eps.columns:
        return eps, True
    for col in ("next.success", "next.reward"):
        if col in meta.features:
            df = read_frame_columns(root, ["episode_index", "frame_index", col])
            df[col] = [float(np.asarray(v).reshape(-1)[0]) for v in df[col]]
            g = df.sort_values("frame_index").groupby("episode_index")[col]
            flag = (g.max() > 0) if col == "next.success" else (g.last() > 0)
            eps = eps.copy()
            eps["success"] = [bool(flag.get(int(e), False)) for e in eps["episode_index"]]
            return eps, True
    warnings.warn(f"{root}: no success flag per episode (no success column in meta/episodes, no next.success or "
                  "next.reward per frame); every episode is taken as a success and AUROC is left out",
                  UserWarning, stacklevel=3)
    return eps, False


def read_meta(root: Path, cameras: list[str]):
    """LeRobot's metadata of the dataset and its episodes table (sorted by index), checked for ``cameras``."""
    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    if not sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        raise DatasetError(f"{root}/meta/episodes: no episodes; the dataset is empty")
    meta = open_metadata(root)
    available = [k.removeprefix("observation.images.") for k in meta.video_keys]
    missing = [c for c in cameras if c not in available]
    if missing:
        raise DatasetError(f"{root / 'meta' / 'info.json'}: camera(s) {missing} requested but the dataset has "
                           f"{available}; map them with --camera-map=<dataset camera>:<model camera>,...")
    eps = meta.episodes.with_format(None).to_pandas().sort_values("episode_index").reset_index(drop=True)
    if len(eps) == 0:
        raise DatasetError(f"{root}: the dataset is empty (0 episodes)")
    return meta, eps


def decode_episodes(root: Path, meta, eps: pd.DataFrame, starts: np.ndarray, cameras: list[str], size: int,
                    progress: bool, resize: str = "crop") -> FrameStore:
    """(N, V, size, size, 3) uint8 frames of every episode and camera, in the on-disk store of
    :mod:`robo_reward.data.frame_store`: reused when the dataset is unchanged, else built by
    streaming each video file once (memory holds one frame, not a video)."""
    path = store_path(root, cameras, size, resize)
    if path.exists():
        store = FrameStore(path)
        if store.shape == (int(eps["length"].sum()), len(cameras), size, size, 3):
            return store
    fps = int(meta.fps)
    n_total = int(eps["length"].sum())
    writer = StoreWriter(path, (n_total, len(cameras), size, size, 3),
                         {"dataset": str(Path(root).resolve()), "cameras": list(cameras), "size": size,
                          "resize": resize, "frames": n_total})
    bar = tqdm(total=n_total * len(cameras), desc="decode videos", disable=not progress, unit="frame",
               unit_scale=True, mininterval=0.5)
    try:
        for v, cam in enumerate(cameras):
            key = f"observation.images.{cam}"
            files: dict[tuple[int, int], list[tuple[dict, int]]] = {}
            for rec, start in zip(eps.to_dict("records"), starts, strict=True):
                files.setdefault((int(rec[f"videos/{key}/chunk_index"]), int(rec[f"videos/{key}/file_index"])),
                                 []).append((rec, int(start)))
            for (chunk, fidx), members in files.items():
                vpath = root / meta.video_path.format(video_key=key, chunk_index=chunk, file_index=fidx)
                dest = {}  # frame index in the file -> row of the store
                for rec, start in members:
                    first = int(round(float(rec[f"videos/{key}/from_timestamp"]) * fps))
                    dest.update({first + t: start + t for t in range(int(rec["length"]))})
                last, n_video = max(dest), 0
                for t, frame in enumerate(iter_video(vpath)):
                    n_video = t + 1
                    if t in dest:
                        writer.put(dest[t], v, to_square(frame[None], size, resize)[0])
                        bar.update(1)
                    if t >= last:
                        break
                for rec, _ in members:
                    first = int(round(float(rec[f"videos/{key}/from_timestamp"]) * fps))
                    if first + int(rec["length"]) > n_video:
                        raise DatasetError(f"{key} file {chunk}/{fidx}: episode {int(rec['episode_index'])} needs "
                                           f"frames [{first}, {first + int(rec['length'])}) but the video has "
                                           f"{n_video}")
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return writer.commit()


def _whole_seconds(times) -> bool:
    return times is not None and len(times) > 0 and all(float(t) == round(float(t)) for t in times)


def episode_labels(root: Path, rec: dict, start: int, use_stages: bool, stage_names: list[str],
                   proportions: list[float], fps: int = 30) -> EpisodeLabels:
    """Stage, tau and global progress per frame of one episode (from its SARM annotations, or linear)."""
    n = int(rec["length"])
    seg = None
    if use_stages:
        names = rec.get("sparse_subtask_names")
        if names is None or len(names) == 0:
            raise AnnotationError(f"{root}/meta/episodes: episode {rec['episode_index']} has no annotations")
        ends = [int(x) for x in rec["sparse_subtask_end_frames"]]
        if ends and n <= ends[-1] < n + fps and _whole_seconds(rec.get("sparse_subtask_end_times")):
            ends[-1] = n - 1  # whole-second times (LeRobot's annotator): the last end rounds up past the episode
        seg = Segments(tuple(names), tuple(int(x) for x in rec["sparse_subtask_start_frames"]),
                       tuple(ends)).normalized(n)
        seg.validate(n, where=f"{root}/meta/episodes episode {rec['episode_index']}")
        unknown = set(seg.names) - set(stage_names)
        if unknown:
            raise AnnotationError(f"episode {rec['episode_index']}: stages {sorted(unknown)} are not in "
                                  f"{root / 'meta' / 'temporal_proportions_sparse.json'} ({stage_names})")
    st, tau, prog = episode_progress(n, seg, stage_names, proportions)
    return EpisodeLabels(int(rec["episode_index"]), start, n, st, tau.astype(np.float32), prog.astype(np.float32),
                         bool(rec.get("success", True)), str(rec.get("quality", "unknown")))


def _load_state(root: Path, meta, eps: pd.DataFrame) -> np.ndarray:
    """observation.state of every frame, (N, S) float32, in the frame cache's row order."""
    if "observation.state" not in meta.features:
        raise DatasetError(f"{root}/meta/info.json: feature observation.state missing; a use_state model needs "
                           "proprioception (or train with model.use_state=false)")
    if not sorted((root / "data").glob("chunk-*/file-*.parquet")):
        raise DatasetError(f"{root}/data: no parquet files; expected the frames' observation.state")
    df = read_frame_columns(root, ["episode_index", "frame_index", "observation.state"])
    df = df.sort_values(["episode_index", "frame_index"])
    lengths = df.groupby("episode_index").size()
    want = eps.set_index("episode_index")["length"]
    if not lengths.reindex(want.index).fillna(0).astype(int).equals(want.astype(int)):
        bad = [int(i) for i in want.index if int(lengths.get(i, 0)) != int(want[i])]
        raise DatasetError(f"{root}/data: episode(s) {bad[:5]} have a different number of frames than "
                           "meta/episodes says; expected one observation.state per frame")
    df = df[df["episode_index"].isin(want.index)]
    arr = np.stack(df["observation.state"].to_numpy()).astype(np.float32)
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise DatasetError(f"{root}/data: observation.state has NaN/inf (episode "
                           f"{int(df['episode_index'].iloc[row])}, frame {int(df['frame_index'].iloc[row])}); "
                           "expected finite joint positions")
    return arr


def hop_target(p_before: np.ndarray, p_after: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Robo-Dopamine hop: progress made over the distance left (or, for regress, over the
    progress made so far). Always in [-1, 1]."""
    d = p_after - p_before
    denom = np.where(d >= 0, 1.0 - p_before, p_before)
    return np.clip(d / np.maximum(denom, eps), -1.0, 1.0)


def split_episodes(n: int, held_out_frac: float, seed: int,
                   success: list[bool] | None = None) -> tuple[list[int], list[int]]:
    """A fixed, seeded train / held-out split of episode positions; with ``success`` flags of both
    kinds, stratified: successes and failures are held out in proportion (at least one of each
    kind that has two or more episodes), so VOC+ and AUROC are defined on the held-out set.
    ``held_out_frac`` 0 holds out nothing (train on every episode, evaluate on another dataset)."""
    rng = np.random.default_rng(seed)
    if success is None or len(set(success)) < 2:
        order = rng.permutation(n)
        k = max(1, int(round(n * held_out_frac))) if n > 1 and held_out_frac > 0 else 0
        return sorted(order[k:].tolist()), sorted(order[:k].tolist())
    train, held = [], []
    for kind in (True, False):
        pos = np.flatnonzero(np.asarray(success) == kind)
        order = rng.permutation(pos)
        k = max(1, int(round(len(pos) * held_out_frac))) if len(pos) > 1 and held_out_frac > 0 else 0
        held += order[:k].tolist()
        train += order[k:].tolist()
    return sorted(train), sorted(held)


class WindowSampler:
    """Samples causal training windows of ``window`` frames ``gap`` apart, ending anywhere in an
    episode; with probability ``rewind_prob`` the window is played forward then backward, and with
    probability ``pause_prob`` a forward window ends in a pause (its last frames repeat one frame)."""

    def __init__(self, cache: FrameCache, episodes: list[int], window: int, gap: int, rewind_prob: float,
                 view_dropout: float, seed: int = 0, features: np.ndarray | None = None,
                 pause_prob: float = 0.0):
        if not episodes:
            raise DatasetError("no training episodes; expected at least one")
        self.cache, self.eps = cache, [cache.episodes[i] for i in episodes]
        self.window, self.gap, self.rewind_prob, self.view_dropout = window, gap, rewind_prob, view_dropout
        self.pause_prob = pause_prob
        self.rng = np.random.default_rng(seed)
        self.features = features  # (N, V, F) cached trunk features, used instead of frames
        lengths = np.array([e.length for e in self.eps], dtype=float)
        self.p_ep = lengths / lengths.sum()

    def window_indices(self, ep: EpisodeLabels, end: int, rewind: int = 0) -> np.ndarray:
        """Frame indices (within the episode) of a window whose turn point is ``end`` and whose
        last ``rewind`` frames go back in time."""
        fwd = self.window - rewind
        idx = [end - self.gap * (fwd - 1 - i) for i in range(fwd)] + [end - self.gap * j for j in range(1, rewind + 1)]
        return np.clip(np.array(idx), 0, ep.length - 1)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        """Windows come in pairs from the same episode (rows 2k and 2k+1), so the hop head also
        learns long-range BEFORE/AFTER pairs, not only the span of one window."""
        b_idx, b_stage, b_tau, b_prog, b_succ, b_rew = [], [], [], [], [], []
        ep = self.eps[0]
        for n in range(batch):
            if n % 2 == 0:
                ep = self.eps[self.rng.choice(len(self.eps), p=self.p_ep)]
            rewind = 0
            if self.rng.uniform() < self.rewind_prob and self.window > 1:
                rewind = int(self.rng.integers(1, self.window))
            end = int(self.rng.integers(0, ep.length))
            idx = self.window_indices(ep, end, rewind)
            if rewind == 0 and self.window > 1 and self.rng.uniform() < self.pause_prob:
                held = int(self.rng.integers(1, self.window))  # the last `held` frames repeat one
                idx[-held:] = idx[-held - 1]
            b_idx.append(ep.start + idx)
            b_stage.append(ep.stage[idx])
            b_tau.append(ep.tau[idx])
            b_prog.append(ep.progress[idx])
            tail = max(3, int(round(0.05 * ep.length)))
            b_succ.append((idx >= ep.length - tail) & ep.success)
            b_rew.append(rewind)
        rows = np.stack(b_idx)  # (B, T)
        v = len(self.cache.cameras)
        keep = self.rng.uniform(size=(batch, v)) >= self.view_dropout
        keep[np.arange(batch), self.rng.integers(0, v, batch)] = True  # at least one view stays
        view_mask = torch.from_numpy(np.repeat(keep[:, None, :], self.window, axis=1))
        if self.features is not None:
            inputs = {"features": torch.from_numpy(self.features[rows]).float() * view_mask[..., None]}
        else:
            frames = torch.from_numpy(self.cache.frames[rows])  # (B, T, V, H, W, 3)
            frames = frames.permute(0, 1, 2, 5, 3, 4).float().div_(255.0)
            frames = random_shift(frames, self.rng)
            inputs = {"frames": frames * view_mask[..., None, None, None]}
        if self.cache.state is not None:
            inputs["state"] = torch.from_numpy(self.cache.state[rows])  # (B, T, S)
        prog = np.stack(b_prog)
        return {
            **inputs, "view_mask": view_mask,
            "stage": torch.from_numpy(np.stack(b_stage)).long(),
            "tau": torch.from_numpy(np.stack(b_tau)).float(),
            "progress": torch.from_numpy(prog).float(),
            "success": torch.from_numpy(np.stack(b_succ)).float(),
            "hop_fwd": torch.from_numpy(hop_target(prog[:, 0], prog[:, -1])).float(),
            "hop_bwd": torch.from_numpy(hop_target(prog[:, -1], prog[:, 0])).float(),
            "hop_pair": torch.from_numpy(hop_target(prog[0::2, -1][: batch // 2], prog[1::2, -1][: batch // 2])).float(),
            "rewind": torch.tensor(b_rew),
        }


def random_shift(x: torch.Tensor, rng: np.random.Generator, pad: int = 4) -> torch.Tensor:
    """DrQ-style random shift, one offset per (window, view), the same across time."""
    b, t, v, c, h, w = x.shape
    padded = torch.nn.functional.pad(x.flatten(0, 2), (pad, pad, pad, pad), mode="replicate").view(b, t, v, c, h + 2 * pad,
                                                                                                  w + 2 * pad)
    out = torch.empty_like(x)
    offs = rng.integers(0, 2 * pad + 1, size=(b, v, 2))
    for i in range(b):
        for j in range(v):
            dy, dx = offs[i, j]
            out[i, :, j] = padded[i, :, j, :, dy: dy + h, dx: dx + w]
    return out


@torch.no_grad()
def feature_cache(model, cache: FrameCache, path: Path, batch: int = 256, progress: bool = True) -> np.ndarray:
    """Trunk features of every frame and view, (N, V, F) float16, computed once and stored at
    ``path`` (reused when its shape matches)."""
    n, v = cache.frames.shape[:2]
    if path.exists():
        feats = np.load(path, mmap_mode="r")
        if feats.shape[:2] == (n, v):
            return np.asarray(feats)
    chunks = []
    rows = max(1, batch // v)
    for i in tqdm(range(0, n, rows), desc="cache features", disable=not progress):
        block = np.asarray(cache.frames[i: i + rows])
        x = torch.from_numpy(block.reshape(-1, *block.shape[2:])).permute(0, 3, 1, 2).float() / 255.0
        chunks.append(model.encoder.trunk(x).numpy().astype(np.float16).reshape(len(block), v, -1))
    feats = np.concatenate(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    tmp.replace(path)
    return feats
