"""What ``launchers/sweep.py`` prints at the end of a sweep, per kind of outcome (``outcome.text()``)."""

from typing import List

from .. import experiment_layout as layout
from ..ablation import format_temperature_table
from ..cli import format_table
from .console import arms_sentence, stopped_sentence


def sweep_text(outcome) -> str:
    """Per group: what tells it apart, dense mean ± std, max matching sparsity; the arms in one
    sentence; the trajectories stopped early; wall time and core utilisation; then, for a
    transfer, its verdicts; where the results are."""
    fields = [k for k in outcome.summary[0] if k in outcome.group_fields] if outcome.summary else []
    rows = [[s["group"], *[s[f] for f in fields], s["seeds"], f"{_pct(s['dense_mean'])} ± {_pct(s['dense_std'])}",
             _pct(s["max_matching_sparsity"]), s["trials"], s["rounds_run"], s["epochs"]] for s in outcome.summary]
    lines = ["", format_table(["group", *fields, "seeds", "dense mean ± std %", "max matching sparsity %", "trials",
                               "rounds run", "epochs"], rows)]
    sentence = arms_sentence(outcome.summary)
    if sentence:
        lines += ["", sentence]
    lines.append(stopped_sentence(outcome.stopped_early))
    t = outcome.timing
    if t:
        utilisation = "n/a" if t["core_utilisation"] is None else f"{t['core_utilisation']:.2f}"
        lines.append(f"wall time {_minutes(t['total_wall_s'])} (tuning {_minutes(t['tuning_wall_s'])}); core "
                     f"utilisation {utilisation} = {t['round_seconds']:.0f} s of rounds ÷ ({t['cores']:g} cores × "
                     f"{t['tuning_wall_s']:.0f} s)")
    if outcome.transfer:
        lines += _transfer_lines(outcome.transfer)
    lines += ["", f"results: {outcome.experiment / layout.RESULTS_FILE}",
              f"tensorboard: tensorboard --logdir {outcome.experiment / layout.TENSORBOARD_DIR}"]
    return "\n".join(lines)


def _transfer_lines(transfer: dict) -> List[str]:
    if "search" in transfer:
        rows = [[task, _pct(a.get("sparsity")), a.get("round"), a.get("seeds_at_boundary"), a.get("seeds_at_neighbour"),
                 f"{a.get('fine_tunes')}/{a.get('exhaustive_fine_tunes')}", a["reason"]]
                for task, a in transfer["search"].items()]
        return ["", "automatic search (bisection over the upstream rounds, all seeds at the boundary):",
                format_table(["task", "max matching sparsity %", "round", "seeds at boundary", "seeds past it",
                              "fine-tunes (vs exhaustive)", "confidence"], rows)]
    if not transfer["rows"]:  # a perturbation-only space transfers to no downstream task
        return []
    rows = [[r["task"], r["round"], _pct(r["sparsity"]), _pct(r["mean"]), r["seeds"],
             {True: "yes", False: "no", None: "?"}[r["matching"]]] for r in transfer["rows"]]
    lines = ["", "transferred tickets (m_P, θ_p), judged against each task's dense fine-tune:",
             format_table(["task", "upstream round", "sparsity %", "mean metric %", "seeds", "matching"], rows)]
    lines += [f"max matching sparsity on {task}: {_pct(best)}" for task, best in transfer["max_matching_by_task"].items()]
    lines.append(f"max universal sparsity (matching on every task): {_pct(transfer['max_universal_sparsity'])}")
    return lines


def ablation_text(outcome) -> str:
    """Every trial's row, then Table 2 (transfer accuracy per temperature) and where both are."""
    rows = [[r["temperature"], r["seed"], _pct(r["upstream_sparsity"]), _pct(r["sparsity"]),
             _pct(r["simclr_metric"]), r["downstream_task"], _pct(r["accuracy"]), f"{r['seconds']:.0f}"]
            for r in outcome.rows]
    return "\n".join([
        f"upstream ticket: {outcome.upstream_ticket}", format_table(["temperature", "seed", "upstream sparsity %", "sparsity %", "simCLR metric %", "downstream",
                      "accuracy %", "seconds"], rows),
        "", "Table 2: transfer accuracy of the simCLR tickets at each temperature",
        format_temperature_table(outcome.table), "",
        f"results: {outcome.experiment / layout.ABLATION_TRIALS_FILE}, "
        f"{outcome.experiment / layout.TEMPERATURE_TABLE_FILE}"])


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s"


def _pct(value) -> str:
    return "none" if value is None else f"{100 * float(value):.2f}"
