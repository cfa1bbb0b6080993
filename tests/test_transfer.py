import pickle

import pytest
from ray.tune.search import Searcher

from ray_lth.matching import MatchingTracker
from ray_lth.naming import group_name, trial_name
from ray_lth.transfer import TransferSpace, transfer_verdicts
from ray_lth.tune.dependency import DependencySearcher
from ray_lth.tune.trainable import UPSTREAM_FAILED


def _space(**extra):
    values = dict(description="t", upstream=dict(model="resnet8", task="shapes", rewind="init", epochs=1),
                  downstream={"digits": {}, "gratings": {}}, rounds=[1, 2], seeds=[0, 1], weights="none")
    values.update(extra)
    return TransferSpace(**values)


def test_plan_pairs_seeds_and_judges_every_ticket_against_its_task_dense_fine_tune():
    plan = _space().plan()
    assert [c["seed"] for c in plan.upstream] == [0, 1] and plan.upstream[0]["rounds"] == 2
    assert len(plan.independent) == 2 * 2  # dense fine-tune per task and seed
    assert len(plan.dependents) == 2 * 2 * 2  # task x round x seed
    assert all(d.config["seed"] == plan.upstream[d.upstream]["seed"] for d in plan.dependents)
    assert all(d.config["rounds"] == 0 and d.config["mask_label"] == f"m_shapes-r{d.round}" for d in plan.dependents)
    for task in ("digits", "gratings"):
        assert all(plan.references[g] == plan.dense_groups[task] for g in plan.ticket_groups[task].values())
    with_imp = _space(task_specific=["init", "early"]).plan()
    assert len(with_imp.independent) == 4 + 2 * 2 * 2


def test_bad_transfer_spaces_are_rejected():
    with pytest.raises(ValueError, match="rounds must list upstream rounds >= 1"):
        _space(rounds=[0, 2]).plan()
    with pytest.raises(ValueError, match="task_specific rewinds"):
        _space(task_specific=["sideways"]).plan()
    with pytest.raises(ValueError, match="task='imagenet21k'"):
        _space(downstream={"imagenet21k": {}}).validate()


def test_searcher_waits_for_the_upstream_round_then_finishes():
    plan = _space(seeds=[0]).plan()
    searcher = DependencySearcher(plan, "/")
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]  # upstream + 2 dense baselines
    assert suggested[0]["task"] == "shapes" and {c["task"] for c in suggested[1:]} == {"digits", "gratings"}
    assert searcher.suggest("t3") is None  # no upstream round yet
    searcher.on_trial_result("t0", {"round": 0, "trial_fs_path": "/up"})
    first = [searcher.suggest("t3"), searcher.suggest("t4")]
    assert {c["mask_file"] for c in first} == {"/up/trajectory/mask_round_01.rlthmask"}
    assert searcher.suggest("t5") is None  # round 2's mask needs upstream round 1
    searcher.on_trial_result("t0", {"round": 1, "trial_fs_path": "/up"})
    assert searcher.suggest("t5")["mask_file"].endswith("mask_round_02.rlthmask")
    assert searcher.suggest("t6")["mask_file"].endswith("mask_round_02.rlthmask")
    assert searcher.suggest("t7") == Searcher.FINISHED
    assert [upstream_round for _, upstream_round in searcher.issue_order] == [0, 0, 1, 1]


def test_a_failed_upstream_fails_its_dependants_by_name_and_state_survives_save(tmp_path):
    plan = _space(seeds=[0]).plan()
    searcher = DependencySearcher(plan, "/")
    for i in range(3):
        searcher.suggest(f"t{i}")
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = DependencySearcher(plan, "/")
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.next_plain == 3 and restored.role == searcher.role
    restored.on_trial_complete("t0", error=True)
    config = restored.suggest("t3")
    assert trial_name(plan.upstream[0]) in config[UPSTREAM_FAILED] and "failed" in config[UPSTREAM_FAILED]
    pickle.dumps(restored)  # Tune pickles searchers with the experiment


def test_transfer_verdicts_universal_and_per_task():
    plan = _space(rounds=[1, 2, 3]).plan()
    tracker = MatchingTracker(2, references=plan.references)

    def add(group, values, sparsity):
        for seed, value in enumerate(values):
            tracker.add(group, f"{group}-{seed}", 0, sparsity, value)

    add(plan.dense_groups["digits"], [0.90, 0.92], 0.0)  # band 0.91 - 0.0141
    add(plan.dense_groups["gratings"], [0.80, 0.80], 0.0)  # band 0.80 exactly (std 0)
    add(plan.ticket_groups["digits"][1], [0.91, 0.91], 0.2)
    add(plan.ticket_groups["digits"][2], [0.90, 0.90], 0.36)
    add(plan.ticket_groups["gratings"][1], [0.80, 0.80], 0.2)  # tie with the band: matching
    add(plan.ticket_groups["gratings"][2], [0.79, 0.80], 0.36)
    verdicts = transfer_verdicts(tracker, plan, [1, 2, 3])  # round 3 never ran: reported, not matching
    assert [r["matching"] for r in verdicts["rows"] if r["round"] == 3] == [None, None]
    assert set(verdicts["rows"][2]) == set(verdicts["rows"][0])
    assert verdicts["max_matching_by_task"] == {"digits": 0.36, "gratings": 0.2}
    assert verdicts["max_universal_sparsity"] == 0.2
    assert group_name({**plan.dependents[0].config}) in plan.references


def test_bisect_searcher_asks_only_for_the_fine_tunes_the_boundary_search_needs():
    plan = _space(seeds=[0, 1], rounds=[1, 2, 3, 4, 5, 6, 7, 8], downstream={"digits": {}}, search="bisect").plan()
    searcher = DependencySearcher(plan, "/")
    ids = iter(f"t{i}" for i in range(1000))
    plain = {}
    for _ in range(len(plan.upstream) + len(plan.independent)):
        trial = next(ids)
        plain[trial] = searcher.suggest(trial)
    for trial, config in plain.items():
        if config["task"] == "shapes":
            searcher.on_trial_result(trial, {"round": 8, "trial_fs_path": f"/up{config['seed']}"})
    assert searcher.suggest(next(ids)) is None  # no band before the dense fine-tunes finish
    for trial, config in plain.items():
        if config["task"] == "digits":
            searcher.on_trial_complete(trial, {"metric": 0.90, "round": 0})
    curve = {k: 0.95 if k <= 5 else 0.80 for k in range(1, 9)}  # matching up to round 5
    asked = []
    while True:
        trial = next(ids)
        config = searcher.suggest(trial)
        if config == Searcher.FINISHED:
            break
        assert config is not None
        round_k = int(config["mask_label"].rsplit("-r", 1)[1])
        assert config["mask_file"] == f"/up{config['seed']}/trajectory/mask_round_{round_k:02d}.rlthmask"
        asked.append((round_k, config["seed"]))
        searcher.on_trial_complete(trial, {"metric": curve[round_k], "round": 0})
    assert len(asked) < 8 * 2 and len(set(asked)) == len(asked)
    assert {(5, 0), (5, 1), (6, 0), (6, 1)} <= set(asked)  # both seeds at the boundary and past it
    answer = searcher.searches["digits"].answer()
    assert plan.rounds[answer.level] == 5 and not answer.uncertain


def test_a_transfer_trial_on_object_storage_gets_its_mask_as_a_uri_with_the_stores_options():
    """Every node opens the upstream's mask through the storage layer: the experiment's URI (its
    endpoint options kept) and the upstream trial's folder, not a local path."""
    plan = _space(seeds=[0]).plan()
    searcher = DependencySearcher(plan, "s3://lth/exp?endpoint_override=127.0.0.1:9000&scheme=http")
    [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_result("t0", {"round": 0, "trial_fs_path": "s3://lth/exp/upstream-trial"})
    assert searcher.suggest("t3")["mask_file"] == \
        "s3://lth/exp/upstream-trial/trajectory/mask_round_01.rlthmask?endpoint_override=127.0.0.1:9000&scheme=http"
