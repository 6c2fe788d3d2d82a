"""RA-BC: the weight formula, per-batch renormalisation, weighted-loss equivalence, parity with
LeRobot's own RABCWeights on our parquet, bad input, and train-bc / eval-policy smoke runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_reward.cli import main
from robo_reward.data import DatasetError
from robo_reward.data.table import load_frame_table, read_progress_parquet
from robo_reward.policies.rabc import DeltaStats, delta_stats, normalize_batch, progress_deltas, rabc_weights
from robo_reward.policies.train_bc import weighted_chunk_loss

finite = st.floats(-1.0, 1.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=50), st.floats(0.0, 0.5), st.floats(0.0, 0.3), st.floats(1e-4, 0.5))
def test_weight_formula(deltas, kappa, mu, sigma):
    r = np.array(deltas)
    w = rabc_weights(r, kappa, DeltaStats(mu, sigma))
    assert np.all((w >= 0) & (w <= 1))
    assert np.all(w[r > kappa] == 1.0)
    assert np.all(w[r < 0] == 0.0)
    mid = (r >= 0) & (r <= kappa)
    expect = np.clip((r[mid] - (mu - 2 * sigma)) / (4 * sigma + 1e-6), 0, 1)
    np.testing.assert_allclose(w[mid], expect, rtol=1e-5, atol=1e-6)


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40))
def test_weights_are_monotone_in_progress_delta(deltas):
    r = np.sort(np.array(deltas))
    w = rabc_weights(r, 0.05, delta_stats(r))
    assert np.all(np.diff(w) >= -1e-7)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=64).filter(lambda x: sum(x) > 1e-3))
def test_batch_renormalisation_sums_to_batch_size(ws):
    w = normalize_batch(torch.tensor(ws, dtype=torch.float64))
    assert float(w.sum()) == pytest.approx(len(ws) * sum(ws) / (sum(ws) + 1e-6), rel=1e-6)
    assert float(w.sum()) == pytest.approx(len(ws), rel=1e-3)
    # relative weights are kept
    i = int(np.argmax(ws))
    assert float(w[i]) == pytest.approx(max(ws) * len(ws) / (sum(ws) + 1e-6), rel=1e-4)


def test_weighted_loss_with_unit_weights_is_the_plain_loss():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(16, 5, 4, generator=g), torch.randn(16, 5, 4, generator=g)
    mask = (torch.rand(16, 5, generator=g) > 0.2).float()
    mask[:, 0] = 1
    plain = weighted_chunk_loss(pred, target, mask)
    ones = weighted_chunk_loss(pred, target, mask, torch.ones(16))
    assert float(ones) == pytest.approx(float(plain), rel=1e-5)
    # a zero weight removes a sample's contribution
    w = torch.ones(16)
    w[0] = 0
    alt_target = target.clone()
    alt_target[0] += 100.0
    assert float(weighted_chunk_loss(pred, alt_target, mask, w)) == pytest.approx(
        float(weighted_chunk_loss(pred, target, mask, w)), rel=1e-6)


def test_progress_deltas_clamp_at_episode_end():
    p = np.array([0.0, 0.2, 0.5, 0.9, 0.1, 0.3, 0.6])
    ep = np.array([0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(progress_deltas(p, ep, 2), [0.5, 0.7, 0.4, 0.0, 0.5, 0.3, 0.0])


def test_lerobot_rabc_parity(tiny_dataset, tiny_run, tmp_path):
    """LeRobot's RABCWeights reads our annotate-progress parquet and gives our weights."""
    from lerobot.rewards.sarm.rabc import RABCWeights

    from robo_reward.reward.evaluate import annotate_progress

    path = annotate_progress(tiny_run, tiny_dataset, tmp_path / "sarm_progress.parquet", progress_bar=False)
    table = load_frame_table(tiny_dataset)
    phi = read_progress_parquet(path, table)
    chunk, kappa = 5, 0.02
    ours_raw = rabc_weights(progress_deltas(phi, table.episode_index, chunk), kappa,
                            delta_stats(progress_deltas(phi, table.episode_index, chunk)))
    theirs = RABCWeights(path, chunk_size=chunk, head_mode="sparse", kappa=kappa, device=torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        idx = rng.choice(len(table.index), size=32, replace=False)
        w_theirs, _ = theirs.compute_batch_weights({"index": torch.as_tensor(table.index[idx])})
        w_ours = normalize_batch(torch.as_tensor(ours_raw[idx]))
        np.testing.assert_allclose(w_ours.numpy(), w_theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_progress_file_mismatch_and_bad_flags(tiny_dataset, tmp_path, capsys):
    table = load_frame_table(tiny_dataset)
    df = pd.DataFrame({"index": table.index, "episode_index": table.episode_index,
                       "frame_index": table.frame_index, "progress_sparse": np.linspace(0, 1, len(table.index))})
    short = tmp_path / "short.parquet"
    df[df.episode_index != df.episode_index.max()].to_parquet(short)
    with pytest.raises(DatasetError, match="episodes .* frames"):
        read_progress_parquet(short, table)
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={tmp_path / 'b'}", "--kappa=-0.1"]) == 2
    assert "--kappa" in capsys.readouterr().err
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={tmp_path / 'c'}", "--chunk=1000",
                 "--n-action-steps=1", "--steps=1", "--wandb=false"]) == 2
    assert "longer than the shortest episode" in capsys.readouterr().err
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={tmp_path / 'd'}", "--rabc=true",
                 f"--progress={short}", "--steps=1", "--wandb=false"]) == 2
    assert "re-run annotate-progress" in capsys.readouterr().err


def test_train_bc_rabc_and_eval_policy_smoke(tiny_dataset, tiny_run, tmp_path):
    out = tmp_path / "rabc"
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={out}", "--steps=60", "--batch-size=32",
                 f"--reward-model={tiny_run}", "--wandb=false", "--progress-bar=false"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert 0 < log["weights"]["mean_weight"] <= 1 and log["weights"]["delta_std"] > 0
    assert log["log"][-1]["loss"] < log["log"][0]["loss"]  # it learns
    res = tmp_path / "eval.json"
    assert main(["eval-policy", f"--policy={out}", "--episodes=2", f"--out-json={res}", "--video=1",
                 f"--reward-model={tiny_run}", "--max-episode-steps=30"]) == 0
    r = json.loads(res.read_text())
    assert r["episodes"] == 2 and 0 <= r["success_rate"] <= 1 and r["mean_length"] <= 30
    assert 0 <= r["final_progress_mean"] <= 1
    assert (tmp_path / "videos" / "rollout_000.mp4").stat().st_size > 1000


def test_train_bc_images_policy(tiny_dataset, tmp_path):
    out = tmp_path / "img"
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={out}", "--steps=20", "--batch-size=8",
                 "--obs=images", "--cameras=front,wrist", "--wandb=false", "--progress-bar=false"]) == 0
    res = tmp_path / "eval_img.json"
    assert main(["eval-policy", f"--policy={out}", "--episodes=1", f"--out-json={res}",
                 "--max-episode-steps=10"]) == 0
    assert json.loads(res.read_text())["mean_length"] == 10


def test_episode_filter_and_oracle_weights(tiny_dataset, tmp_path):
    from robo_reward.policies.train_bc import TrainBCConfig, sample_weights

    table = load_frame_table(tiny_dataset)
    final = {e: table.gt_progress[table.episode_index == e][-1] for e in table.episodes}
    for cut in (min(final.values()) - 1e-6, max(final.values()) + 1e-6):  # keep all, drop all
        cfg = TrainBCConfig(dataset=tiny_dataset, out=tmp_path, oracle=True, min_final_progress=cut,
                            frame_weights=False)
        w, stats = sample_weights(cfg, table)
        for e, f in final.items():
            assert np.all(w[table.episode_index == e] == (1.0 if f >= cut else 0.0))
        assert stats["episodes_dropped"] == sum(f < cut for f in final.values())
    w2, stats2 = sample_weights(TrainBCConfig(dataset=tiny_dataset, out=tmp_path, oracle=True), table)
    assert 0 < stats2["mean_weight"] < 1 and set(np.unique(w2)) != {1.0}


def test_filtered_bc_adds_only_the_successful_episodes_of_recordings(tiny_dataset, tmp_path, capsys):
    import shutil

    from robo_reward.data.lerobot_io import SIDECAR, load_episode_meta, materialize_annotations
    from robo_reward.policies.train_bc import TrainBCConfig, add_successful_episodes, train_bc

    rec = tmp_path / "rollouts"
    shutil.copytree(tiny_dataset, rec)
    metas = load_episode_meta(rec)
    lines = [json.loads(x) for x in (rec / SIDECAR).read_text().splitlines()]
    for rec_line in lines:  # a recording whose episodes 0 and 2 failed
        rec_line["success"] = rec_line["episode_index"] not in (0, 2)
    (rec / SIDECAR).write_text("".join(json.dumps(x) + "\n" for x in lines))
    materialize_annotations(rec)
    base = load_frame_table(tiny_dataset)
    both = add_successful_episodes(base, rec)
    kept = sum(m.length for i, m in metas.items() if i not in (0, 2))
    assert len(both.index) == len(base.index) + kept and len(np.unique(both.index)) == len(both.index)
    assert len(both.episodes) == len(base.episodes) + len(metas) - 2
    r = train_bc(TrainBCConfig(dataset=tiny_dataset, out=tmp_path / "fbc", steps=5, batch_size=16, wandb=False,
                               progress_bar=False, add_successes=[str(rec)]))
    assert r["frames"] == len(both.index)
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={tmp_path / 'x'}", f"--add-successes={rec}",
                 "--rabc=true", "--oracle=true"]) == 2
    assert "--add-successes: Filtered BC is for plain BC" in capsys.readouterr().err
