"""Where an experiment keeps its files: every reader and writer takes the names from here.

    <storage>/
      .ray_lth_cache/                 the embedded θ_p (pre-trained once per model), the ablation's upstream ticket
      <name>/                         one experiment (``launchers/sweep.py --name``)
        ray_lth_space.json            the space it was started with: {"kind": ..., "space": {...}}
        results.csv                   one row per trial and round (IMP kinds)
        summary.csv, timing.json      per group: dense band and maximum matching sparsity; wall time, utilisation
        transfer_summary.csv, max_matching_search.csv     a transfer plan's verdicts, its automatic search
        trials.csv, temperature_table.csv                 the temperature ablation's rows and Table 2
        tensorboard/                  one run per trial
        report/                       README.md, figures and tables (analysis/report.py)
        tuner.pkl                     Ray Tune's own state (what --resume restores)
        <trial>/params.json           the trial's config, as Ray Tune wrote it
        <trial>/trajectory/           trajectory.json, mask_round_KK.rlthmask, carried_round_KK.pt, rewind_state.pt

``experiment`` and ``trial`` below are anything ``/`` joins: a ``pathlib.Path`` or a ``storage.Location``.
"""

CACHE_DIR = ".ray_lth_cache"

SPACE_FILE = "ray_lth_space.json"
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.csv"
TIMING_FILE = "timing.json"
TRANSFER_SUMMARY_FILE = "transfer_summary.csv"
SEARCH_FILE = "max_matching_search.csv"
ABLATION_TRIALS_FILE = "trials.csv"
TEMPERATURE_TABLE_FILE = "temperature_table.csv"
TENSORBOARD_DIR = "tensorboard"
REPORT_DIR = "report"
TUNER_STATE_FILE = "tuner.pkl"

PARAMS_FILE = "params.json"
TRAJECTORY_DIR = "trajectory"

# in a trajectory folder (trajectory_state.py)
STATE_FILE = "trajectory.json"
MASK_FILE = "mask_round_{:02d}.rlthmask"
MASK_PREFIX = MASK_FILE.split("{")[0]
CARRIED_FILE = "carried_round_{:02d}.pt"
REWIND_FILE = "rewind_state.pt"  # θ_k% (rewind "early"); the name dependent trials pass as rewind_file
# launchers/imp.py --out: a trajectory folder with the run's config beside trajectory.json
RUN_CONFIG_FILE = "config.json"


def trajectory_dir(experiment, trial: str):
    return experiment / trial / TRAJECTORY_DIR


def mask_path(experiment, trial: str, round_index: int):
    return trajectory_dir(experiment, trial) / MASK_FILE.format(round_index)
