"""ManiSkill 3 tasks behind the same env API, camera names (front, side, wrist), ``info`` fields and
``ee_delta`` actions as the MuJoCo tasks: ``make_env("maniskill/PickCube-v1")`` (any name under the
``maniskill/`` prefix resolves here, in ``robo_reward.envs.TASKS`` and, batched, ``VEC_ENVS``).

ManiSkill is an optional extra (``scripts/setup.sh`` installs it with Mesa 25's Vulkan drivers);
:func:`require_maniskill` turns a missing package or a missing Vulkan device into one message
that says what to install.
"""

from __future__ import annotations

from robo_reward.envs import TASKS, VEC_ENVS

PREFIX = "maniskill/"


class ManiSkillUnavailable(ImportError):
    """The optional ManiSkill backend cannot be loaded: the package or a Vulkan device is missing."""


_INSTALL = ("install it with `bash scripts/setup.sh` (it adds mani-skill 3.0.1 and sapien 3.0.3 to the venv, and on "
            "Debian 12 Mesa 25's mesa-vulkan-drivers from bookworm-backports)")


def require_maniskill() -> None:
    """Import ManiSkill and check SAPIEN sees a Vulkan device; raise :class:`ManiSkillUnavailable`
    with the install steps otherwise."""
    try:
        import mani_skill.envs  # noqa: F401
        import sapien
    except ImportError as e:
        raise ManiSkillUnavailable(f"ManiSkill is not installed ({e}); {_INSTALL}") from None
    try:
        sapien.render.get_device_summary()  # "failed to find a rendering device" without Vulkan
    except RuntimeError as e:
        raise ManiSkillUnavailable(vulkan_help(str(e))) from None


def vulkan_help(detail: str) -> str:
    return (f"SAPIEN (ManiSkill's renderer) found no usable Vulkan device ({detail.strip()[:200]}). On a machine "
            "without a GPU it needs Mesa's lavapipe from Mesa 25: on Debian 12 run `echo 'deb "
            "http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list "
            "&& apt-get update && apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1` (scripts/setup.sh "
            "does this); with a GPU install its Vulkan driver (e.g. NVIDIA's libnvidia-gl)")


def task_names() -> list[str]:
    from sim.maniskill.tasks import SPECS

    return [PREFIX + k for k in SPECS]


def _task_factory(name: str):
    from sim.maniskill.tasks import ManiSkillTaskEnv

    def make(**kwargs):
        return ManiSkillTaskEnv(name, **kwargs)

    return make


def _vec_factory(name: str):
    def build(num_envs: int, cameras: tuple[str, ...], image_size: int, max_episode_steps: int | None, seed: int):
        from sim.maniskill.tasks import MSConfig
        from sim.maniskill.vec import ManiSkillVecEnv

        cfg = MSConfig(cameras=cameras, width=image_size, height=image_size, max_episode_steps=max_episode_steps)
        return ManiSkillVecEnv(name, num_envs, cfg, seed=seed)

    return build


TASKS.register_prefix(PREFIX, _task_factory)
VEC_ENVS.register_prefix(PREFIX, _vec_factory)
