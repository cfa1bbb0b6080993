"""The report of a finished experiment folder, without rerunning anything (paper, 5.1-5.3).

Reads ``results.csv``, each trial's ``params.json`` (its config, as Ray Tune wrote it),
``ray_lth_space.json`` (a transfer plan's references) and the round masks under
``<trial>/trajectory/``, and writes into ``<experiment>/report/``:

- ``curves_<task>.png``: metric vs sparsity, one curve per series (an IMP group, or the tickets
  of one source transferred at several rounds), mean ± std over seeds, the dense mean ± std band,
  the matching boundary starred; ``curves_<task>_remaining.png`` over the *number* of remaining
  weights when the series span several models (Figures 9 and 12);
- ``max_matching.csv`` and, for a transfer, ``universal.csv``: the tables of maximum matching and
  universal sparsity; ``perturbations_<task>_<rewind>.png`` (Figure 8) when the plan has
  perturbation baselines (each judged against its own rewind's dense band);
- ``similarity.png``/``.csv`` (relative similarity of the masks of every IMP trial at their
  deepest common round), ``similarity_by_sparsity.png``, ``zero_kernels.png``/``.csv`` (Figure 6)
  and ``heatmap_<series>.png`` (Figure 7, at the round closest to 79.03 % sparsity);
- ``README.md``: the tables and the figures, in Markdown.

The experiment may be in an object store (``s3://…``, as ``--storage`` takes it): its results,
trial configs, space file and round masks (not the checkpoints) are copied into a local temporary
folder, the report is written there (matplotlib writes local files) and ``report/`` is uploaded.
"""

import csv
import itertools
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .. import experiment_layout as layout
from ..experiment_layout import REPORT_DIR
from ..masks import MaskFileError, load_mask, read_mask_header
from ..masks import sparsity as mask_sparsity
from ..matching import DenseBand, MatchingTracker, answer_scope, dense_band
from ..naming import REWIND_SYMBOLS, rewind_point
from ..spaces import space_from_json
from ..storage import Location, location
from .curves import CurvePoint, curve_from_rows, matching_boundary
from .kernels import zero_kernel_counts
from .plots import plot_curves, plot_kernel_heatmaps, plot_series, plot_similarity_matrix
from .similarity import relative_similarity, similarity_matrix

HEATMAP_SPARSITY = 0.7903  # Figure 7's sparsity (7 rounds of 20 %)
_MAX_TRIALS = 12  # similarity matrix size; more is unreadable


@dataclass
class Series:
    """One curve: an IMP group (points by round) or tickets of one source (points by upstream round)."""

    label: str
    task: str
    model: str
    groups: List[str]
    points: List[CurvePoint]
    band: Optional[DenseBand]
    kind: str  # "imp" or "ticket"
    trials: List[str] = field(default_factory=list)  # trial names, seed order (IMP only)
    experiment: Path = None
    rewind: str = ""
    perturbation: str = ""  # "random", "complementary" or "flip" for a section 5.2 baseline


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def read_rows(path: Path) -> List[dict]:
    if not path.is_file():
        raise ValueError(f"{path}: no results.csv; is this an experiment folder written by launchers/sweep.py?")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    required = {"trial_name", "group", "seed", "round", "sparsity", "metric"}
    if rows and not required <= set(rows[0]):
        raise ValueError(f"{path}: columns {sorted(required - set(rows[0]))} missing")
    return rows


def _trial_configs(folder: Path, rows: List[dict]) -> Dict[str, dict]:
    configs = {}
    for name in sorted({r["trial_name"] for r in rows}):
        params = folder / name / layout.PARAMS_FILE
        if params.is_file():
            configs[name] = json.loads(params.read_text())
    return configs


def _saved_space(folder: Path):
    """The space the experiment was started with (its space file), None without one."""
    space_file = folder / layout.SPACE_FILE
    return space_from_json(json.loads(space_file.read_text())) if space_file.is_file() else None


def _plan(folder: Path):
    space = _saved_space(folder)
    return space.transfer_plan() if space is not None else None


def _answer_scopes(folder: Path, rows: List[dict], plan) -> Dict[str, str]:
    """group -> what its maximum matching sparsity covers (``matching.answer_scope``): replays the
    sweep's stopping rule (its ``patience``, from the space file) on results.csv; a group stopped
    before the last round its trials were given answers only up to its first failing boundary."""
    space = _saved_space(folder)
    if space is None:
        return {}
    patience = space.patience
    tracker = MatchingTracker(space.seeds_per_group, patience, plan.references if plan else None)
    for r in rows:
        tracker.add(r["group"], r["trial_name"], int(r["round"]), float(r["sparsity"]), float(r["metric"]))
    configs = _trial_configs(folder, rows)
    planned: Dict[str, int] = {}
    for r in rows:
        rounds = int(configs.get(r["trial_name"], {}).get("rounds", 0))
        planned[r["group"]] = max(planned.get(r["group"], 0), rounds)
    scopes = {}
    for group in tracker.groups():
        stop = tracker.stop_round(group)
        scopes[group] = answer_scope(stop if stop is not None and stop < planned.get(group, 0) else None, patience)
    return scopes


def _ticket_stem(label: str) -> Optional[int]:
    match = re.search(r"-r(\d+)", label)
    return int(match.group(1)) if match else None


def load_series(folder: Path, prefix: str = "") -> tuple:
    """(series, rows, plan) of one experiment folder."""
    folder = Path(folder)
    rows = read_rows(folder / layout.RESULTS_FILE)
    configs = _trial_configs(folder, rows)
    plan = _plan(folder)
    by_group: Dict[str, List[dict]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    group_config = {}
    for row in rows:
        config = configs.get(row["trial_name"])
        if config is not None:
            group_config.setdefault(row["group"], config)

    def own_band(group) -> Optional[DenseBand]:
        reference = plan.references.get(group, group) if plan else group
        dense = [float(r["metric"]) for r in by_group.get(reference, []) if int(r["round"]) == 0]
        return dense_band(dense) if dense else None

    differing_by_task = _differing_fields(by_group, group_config)
    series: List[Series] = []
    tickets: Dict[tuple, List[str]] = {}
    for group, group_rows in by_group.items():
        config = group_config.get(group, {})
        label_text = config.get("mask_label", "")
        pruned = any(int(r["round"]) > 0 for r in group_rows)
        if pruned:
            trials = sorted({r["trial_name"] for r in group_rows}, key=lambda t: int(
                next(r["seed"] for r in group_rows if r["trial_name"] == t)))
            differing = differing_by_task.get(config.get("task"), [])
            series.append(Series(prefix + _series_label(group, config, differing), config.get("task", "?"),
                                 config.get("model", "?"), [group], curve_from_rows(group_rows), own_band(group),
                                 "imp", trials, folder, rewind_point(config) if config else ""))
        elif label_text and _ticket_stem(label_text) is not None:
            stem = re.sub(r"-r\d+", "", label_text)
            key = (config.get("task"), config.get("model"), rewind_point(config), stem,
                   config.get("mask_perturbation", "none"))
            tickets.setdefault(key, []).append(group)
        # a dense-only group (round 0, no ticket) is a baseline: it appears as a band
    for key, groups in sorted(tickets.items()):
        series.append(_ticket_series(key, groups, by_group, group_config, own_band(groups[0]), prefix, folder))
    seen: Dict[tuple, int] = {}
    for s in series:  # two curves of a task never share a label (a dict of curves would merge them)
        seen[(s.task, s.label)] = seen.get((s.task, s.label), 0) + 1
    for s in series:
        if seen[(s.task, s.label)] > 1:
            s.label = f"{s.label} [{s.groups[0].rsplit('-', 1)[-1]}]"
    return series, rows, plan


def _differing_fields(by_group: Dict[str, List[dict]], group_config: Dict[str, dict]) -> Dict[str, List[str]]:
    """task -> the config fields that tell its IMP groups apart: an IMP curve is named by them, not
    by a hash (fields of another task's groups tell nothing here)."""
    pruned_groups = [g for g, rs in by_group.items() if any(int(r["round"]) > 0 for r in rs) and g in group_config]
    differing_by_task = {}
    for task in {group_config[g].get("task") for g in pruned_groups}:
        peers = [g for g in pruned_groups if group_config[g].get("task") == task]
        differing_by_task[task] = sorted(
            k for k in set().union(*(group_config[g] for g in peers)) - _NOT_DISTINGUISHING
            if len({json.dumps(group_config[g].get(k), sort_keys=True) for g in peers}) > 1)
    return differing_by_task


def _ticket_series(key: tuple, groups: List[str], by_group: Dict[str, List[dict]], group_config: Dict[str, dict],
                   band: Optional[DenseBand], prefix: str, folder: Path) -> Series:
    """One curve of the tickets of one source, a point per upstream round."""
    task, model, rewind, stem, perturbation = key
    rows_by_round = []
    for group in groups:
        k = _ticket_stem(group_config[group]["mask_label"])
        rows_by_round += [{**r, "round": k} for r in by_group[group]]
    # "transferred" marks tickets found on another task; a perturbed mask names its perturbation
    kind_word = "" if perturbation != "none" or stem.startswith(f"m_{task}") else "transferred "
    label = f"{prefix}{kind_word}({stem}, {_theta(rewind)}) {model}"
    return Series(label, task, model, groups, curve_from_rows(rows_by_round), band,
                  "ticket", [], folder, rewind, "" if perturbation == "none" else perturbation)


def _theta(rewind_point: str) -> str:
    return REWIND_SYMBOLS.get(rewind_point, str(rewind_point))


_NOT_DISTINGUISHING = {"seed", "device", "num_workers", "data_root", "mask_file", "mask_label", "weights", "task",
                       "model", "rewind", "rounds"}


def _series_label(group: str, config: dict, differing: Sequence[str]) -> str:
    if not config:
        return group
    extra = " ".join(f"{k}={config.get(k)}" for k in differing)
    return (f"(m_{config.get('task')}, {_theta(rewind_point(config))}) {config.get('model')}"
            + (f" {extra}" if extra else ""))


def _prunable_total(series: Series) -> int:
    """Prunable weights of the series' model, from any mask file of it (header only)."""
    folder = series.experiment
    for trial in series.trials:
        path = layout.mask_path(folder, trial, 0)
        if path.is_file():
            return int(read_mask_header(path)["total"])
    for params in folder.glob(f"*/{layout.PARAMS_FILE}"):
        config = json.loads(params.read_text())
        if config.get("model") == series.model and config.get("mask_file") and Path(config["mask_file"]).is_file():
            return int(read_mask_header(config["mask_file"])["total"])
    from ..models import build_model, get_model_spec, prunable_parameters

    spec = get_model_spec(series.model)
    return sum(p.numel() for p in prunable_parameters(build_model(series.model, 1), spec.never_pruned).values())


def _write_csv(path: Path, rows: List[dict]) -> Optional[Path]:
    if not rows:
        return None
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _pct(value) -> str:
    return "—" if value is None else f"{100 * float(value):.2f}"


def _markdown_table(rows: List[dict], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _trial_masks(series: Series, trial: str, rows: List[dict]) -> Dict[int, dict]:
    """round -> mask for every finished round of ``trial`` whose mask file is readable."""
    finished = sorted({int(r["round"]) for r in rows if r["trial_name"] == trial})
    masks = {}
    for k in finished:
        path = layout.mask_path(series.experiment, trial, k)
        try:
            masks[k] = load_mask(path)
        except MaskFileError:
            continue  # a missing/corrupt mask leaves a gap in the mask figures, not a failed report
    return masks


def write_report(experiment, compare: Sequence = ()) -> Location:
    """Write ``<experiment>/report/`` (see the module docstring); returns its README.md.
    ``experiment`` and ``compare``: local folders, storage URIs or Locations."""
    experiment, compare = location(experiment), [location(c) for c in compare]
    if experiment.is_local and all(c.is_local for c in compare):
        readme = _write_report(experiment.local_path, [c.local_path for c in compare], str(experiment),
                               [str(c) for c in compare])
        return location(readme)
    with tempfile.TemporaryDirectory(prefix="ray_lth_report_") as tmp:
        folders = [_local_copy(source, Path(tmp) / str(i) / source.name) for i, source in
                   enumerate([experiment, *compare])]
        readme = _write_report(folders[0], folders[1:], str(experiment), [str(c) for c in compare])
        (experiment / REPORT_DIR).upload(readme.parent)
    return experiment / REPORT_DIR / "README.md"


def _local_copy(experiment: Location, folder: Path) -> Path:
    """What the report reads of an experiment, copied into ``folder``: results.csv, the space
    file, each trial's params.json and round masks; a local experiment is read where it is."""
    if experiment.is_local:
        return experiment.local_path
    results = experiment / layout.RESULTS_FILE
    if not results.exists():
        raise ValueError(f"{results}: no {layout.RESULTS_FILE}; is this an experiment written by launchers/sweep.py?")
    folder.mkdir(parents=True)
    _copy(experiment, folder, layout.RESULTS_FILE)
    _copy(experiment, folder, layout.SPACE_FILE)
    for trial in sorted({row["trial_name"] for row in read_rows(folder / layout.RESULTS_FILE)}):
        layout.trajectory_dir(folder, trial).mkdir(parents=True)
        _copy(experiment / trial, folder / trial, layout.PARAMS_FILE)
        for name in layout.trajectory_dir(experiment, trial).list():
            if name.startswith(layout.MASK_PREFIX):
                _copy(layout.trajectory_dir(experiment, trial), layout.trajectory_dir(folder, trial), name)
    return folder


def _copy(source: Location, folder: Path, name: str) -> None:
    if (source / name).exists():
        (folder / name).write_bytes((source / name).read_bytes())


@dataclass
class Section:
    """One part of the report: a markdown table and/or figures written into ``report/``."""

    table: Optional[str] = None
    figures: List[tuple] = field(default_factory=list)  # (title, file name in report/)


def curves_section(series: List[Series], out: Path) -> Section:
    """Per task: metric vs sparsity of every series, the perturbation baselines per rewind point
    (Figure 8), and the curves over the remaining-weight count when several models meet."""
    figures = []
    for task in sorted({s.task for s in series}):
        in_task = [s for s in series if s.task == task]
        curves = {s.label: s.points for s in in_task}
        bands = {s.label: s.band for s in in_task}
        distinct = {b for b in bands.values() if b is not None}
        common = distinct.pop() if len(distinct) == 1 else None
        name = f"curves_{_slug(task)}.png"
        plot_curves(curves, out / name, f"{task}: metric vs sparsity (mean ± std over seeds)", band=common,
                    bands=bands)
        figures.append((f"{task}: metric vs sparsity", name))
        for rewind in sorted({s.rewind for s in in_task if s.perturbation}):  # m against m_r, m^c, m + Δm
            chosen = [s for s in in_task if s.rewind == rewind]
            name = f"perturbations_{_slug(task)}_{rewind}.png"
            plot_curves({s.label: s.points for s in chosen}, out / name,
                        f"{task}: IMP mask vs perturbed masks, all from {_theta(rewind)}",
                        band=chosen[0].band, bands={s.label: s.band for s in chosen})
            figures.append((f"{task}: perturbation baselines from {_theta(rewind)}", name))
        if len({s.model for s in in_task}) > 1:
            remaining = {s.label: _prunable_total(s) for s in in_task}
            name = f"curves_{_slug(task)}_remaining.png"
            plot_curves(curves, out / name, f"{task}: metric vs remaining weights", band=common, bands=bands,
                        remaining=remaining)
            figures.append((f"{task}: metric vs number of remaining weights", name))
    return Section(figures=figures)


def max_matching_section(experiment: Path, series: List[Series], rows: List[dict], plan,
                         all_rows: Dict[Path, List[dict]], out: Path) -> Section:
    """The maximum matching sparsity per series (``max_matching.csv`` and its markdown table), with
    what it covers where a group stopped early and the rewind scope its rounds ran."""
    answer_scopes = _answer_scopes(experiment, rows, plan)
    matching_rows = []
    for s in series:
        best = matching_boundary(s.points, s.band)
        covers = "; ".join(sorted({answer_scopes[g] for g in s.groups if g in answer_scopes})) or "every round run"
        # what the rounds restored from the rewind point (rewind.py); a results.csv written before has no column
        rewind_scopes = {r.get("rewind_scope") or "all" for r in all_rows[s.experiment] if r["group"] in s.groups}
        matching_rows.append({"series": s.label, "groups": " ".join(s.groups), "task": s.task, "model": s.model,
                              "kind": s.kind, "rewind_scope": ", ".join(sorted(rewind_scopes)),
                              "seeds": s.band.seeds if s.band else 0,
                              "dense_mean": s.band.mean if s.band else None, "dense_std": s.band.std if s.band else None,
                              "max_matching_sparsity": best.sparsity if best else None,
                              "round": best.round if best else None, "metric_there": best.mean if best else None,
                              "covers": covers})
    _write_csv(out / "max_matching.csv", matching_rows)
    return Section("## Maximum matching sparsity\n\nLargest sparsity whose mean over every seed is ≥ dense mean − std "
                   "(footnote 7); `round` is the IMP round (for transferred tickets, the upstream round). `covers`: "
                   "a group stopped by its `patience` failing rounds in a row answers only up to that first "
                   "boundary (a later recovery was never trained); `--patience none` runs every round, as the "
                   "authors. `rewind_scope`: what rounds restored from the rewind point, "
                   "the rest carried over trained.\n\n" +
                   _markdown_table([{**r, "dense %": f"{_pct(r['dense_mean'])} ± {_pct(r['dense_std'])}",
                                     "max matching sparsity %": _pct(r["max_matching_sparsity"]),
                                     "metric there %": _pct(r["metric_there"]),
                                     "round": "—" if r["round"] is None else r["round"]} for r in matching_rows],
                                   ["series", "task", "rewind_scope", "seeds", "dense %", "max matching sparsity %",
                                    "round", "metric there %", "covers"]))


def universal_section(rows: List[dict], plan, out: Path) -> Section:
    """A transfer's universal sparsity (``universal.csv``): per upstream round, each task's verdict."""
    if plan is None or not plan.dense_groups:
        return Section()
    from ..transfer import transfer_verdicts

    tracker = MatchingTracker(len(plan.seeds), 1, plan.references)
    for r in rows:
        tracker.add(r["group"], r["trial_name"], int(r["round"]), float(r["sparsity"]), float(r["metric"]))
    verdicts = transfer_verdicts(tracker, plan, plan.rounds)
    universal = []
    for k in plan.rounds:
        entries = [v for v in verdicts["rows"] if v["round"] == k]
        row = {"upstream_round": k, "sparsity": next((v["sparsity"] for v in entries if v["sparsity"] is not None), None)}
        for v in entries:
            row[v["task"]] = {True: "yes", False: "no", None: "?"}[v["matching"]]
            row[f"{v['task']}_mean"] = v["mean"]
        row["universal"] = "yes" if entries and all(v["matching"] for v in entries) else "no"
        universal.append(row)
    _write_csv(out / "universal.csv", universal)
    tasks = list(plan.dense_groups)
    return Section("## Universal sparsity (transferred tickets)\n\n" + _markdown_table(
        [{**r, "sparsity %": _pct(r["sparsity"]), **{f"{t} mean %": _pct(r.get(f"{t}_mean")) for t in tasks}}
         for r in universal],
        ["upstream_round", "sparsity %"] + [c for t in tasks for c in (f"{t} mean %", t)] + ["universal"]) +
        f"\n\nMaximum universal sparsity (matching on every task): {_pct(verdicts['max_universal_sparsity'])} %; "
        f"per task: " + ", ".join(f"{t} {_pct(v)} %" for t, v in verdicts["max_matching_by_task"].items()))


def imp_masks(series: List[Series], all_rows: Dict[Path, List[dict]]) -> tuple:
    """({"<series> seed<k>": {round: mask}}, {that label: model}) of every IMP trial."""
    masks: Dict[str, Dict[int, dict]] = {}
    models: Dict[str, str] = {}
    for s in series:
        if s.kind != "imp":
            continue
        for trial in s.trials:
            label = f"{s.label} seed{trial.rsplit('seed', 1)[-1]}"
            masks[label] = _trial_masks(s, trial, all_rows[s.experiment])
            models[label] = s.model
    return masks, models


def zero_kernels_section(series: List[Series], masks: Dict[str, Dict[int, dict]], out: Path) -> Section:
    """Figure 6 (completely pruned kernels vs sparsity, first seed of each IMP series) and Figure 7
    (a kernel heatmap at the round closest to 79.03 % sparsity)."""
    kernel_rows, zero_series, figures = [], {}, []
    for s in series:
        if s.kind != "imp" or not s.trials:
            continue
        first = masks[f"{s.label} seed{s.trials[0].rsplit('seed', 1)[-1]}"]
        points = {}  # round -> (sparsity, zero kernels)
        for k, mask in sorted(first.items()):
            counts = zero_kernel_counts(mask)
            points[k] = (mask_sparsity(mask), counts["total"]["zero"])
            kernel_rows += [{"series": s.label, "trial": s.trials[0], "round": k, "sparsity": points[k][0],
                             "layer": layer, "zero_kernels": c["zero"], "kernels": c["kernels"]}
                            for layer, c in counts.items()]
        if points:
            zero_series[s.label] = list(points.values())
        pruned_rounds = [k for k in points if k > 0]
        if pruned_rounds:
            closest = min(pruned_rounds, key=lambda k: abs(points[k][0] - HEATMAP_SPARSITY))
            name = f"heatmap_{_slug(s.label)}.png"
            plot_kernel_heatmaps(first[closest], out / name, f"{s.label}, round {closest} ({100 * points[closest][0]:.2f} "
                                 f"% sparsity): bright = completely pruned kernel")
            figures.append((f"kernel heatmap, {s.label}, round {closest}", name))
    if zero_series:
        _write_csv(out / "zero_kernels.csv", kernel_rows)
        plot_series(zero_series, out / "zero_kernels.png", "completely pruned (zero) kernels, first seed",
                    "zero kernels (count)")
        figures.append(("completely pruned kernels vs sparsity", "zero_kernels.png"))
    return Section(figures=figures)


def similarity_section(masks: Dict[str, Dict[int, dict]], models: Dict[str, str], out: Path) -> Section:
    """Relative mask similarity of the IMP trials of one model (the experiment's first; --compare
    adds other depths) at their deepest common round, and by round for up to 10 pairs."""
    model = models[next(iter(masks))] if masks else None
    with_rounds = {label: m for label, m in masks.items() if len(m) > 1 and models[label] == model}
    if len(with_rounds) < 2:
        return Section()
    figures = []
    chosen = dict(list(with_rounds.items())[:_MAX_TRIALS])
    common = min(max(m) for m in chosen.values())
    if common >= 1:
        labels, matrix = similarity_matrix({label: m[common] for label, m in chosen.items() if common in m})
        plot_similarity_matrix(labels, matrix, out / "similarity.png", f"relative mask similarity at round {common}")
        _write_csv(out / "similarity.csv", [{"mask": a, **{b: float(matrix[i, j]) for j, b in enumerate(labels)}}
                                            for i, a in enumerate(labels)])
        figures.append((f"relative mask similarity at round {common}", "similarity.png"))
    pairs = {}
    for a, b in itertools.islice(itertools.combinations(chosen, 2), 10):
        rounds = sorted(set(chosen[a]) & set(chosen[b]) - {0})
        pairs[f"{a} vs {b}"] = [(mask_sparsity(chosen[a][k]), relative_similarity(chosen[a][k], chosen[b][k]))
                                for k in rounds]
    if any(pairs.values()):
        plot_series(pairs, out / "similarity_by_sparsity.png", "relative mask similarity by round",
                    "similarity (%)", percent=True)
        figures.append(("relative mask similarity vs sparsity", "similarity_by_sparsity.png"))
    return Section(figures=figures)


def _write_report(experiment: Path, compare: Sequence[Path], shown: str, compare_shown: Sequence[str]) -> Path:
    """The report of local folders, into ``<experiment>/report/``; ``shown``: how README.md names them."""
    out = experiment / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    series, rows, plan = load_series(experiment)
    all_rows = {experiment: rows}
    for other in compare:
        more, other_rows, _ = load_series(other, prefix=f"{other.name}: ")
        series += more
        all_rows[other] = other_rows
    masks, models = imp_masks(series, all_rows)
    sections = [curves_section(series, out), max_matching_section(experiment, series, rows, plan, all_rows, out),
                universal_section(rows, plan, out), zero_kernels_section(series, masks, out),
                similarity_section(masks, models, out)]
    figures = [figure for section in sections for figure in section.figures]
    text = [f"# Report: {experiment.name}\n\nFrom `{shown}/{layout.RESULTS_FILE}`"
            + (f" and {', '.join(compare_shown)}" if compare else "") + "; nothing was rerun.\n"]
    text += [section.table for section in sections if section.table]
    text.append("## Figures\n\n" + "\n\n".join(f"### {title}\n\n![{title}]({name})" for title, name in figures))
    readme = out / "README.md"
    readme.write_text("\n\n".join(text) + "\n")
    return readme
