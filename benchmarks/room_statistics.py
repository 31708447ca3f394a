#!/usr/bin/env python3
"""Reverberation of a prepared corpus as distributions (RT60, direct-to-reverberant ratio). Prints JSON.

    python benchmarks/room_statistics.py CORPUS [--split train] [--count 50] [--decay-db 30]
                                         [--compare OTHER_CORPUS] [--plot FIGURE.png] [--quiet]

Reads the first ``--count`` mixtures (by ID) of ``--split`` of a corpus made by
``spmamba-prepare-demo`` or ``spmamba-prepare-echo2mix``, rebuilds each mixture's impulse
responses from its metadata as the corpus maker did (the settings in ``echo2mix_config.json``,
``RoomSimulator(config).impulse_responses(metadata["room"])``) and measures every
source-microphone response:

* RT60: Schroeder backward integration, a line fitted to the energy decay curve from -5 dB to
  -5 - ``--decay-db`` dB (default 30: T30) and extrapolated to -60 dB
  (``pyroomacoustics.experimental.measure_rt60``, which shortens the range where the curve ends
  sooner); beside it the RT60 the metadata asked for (``room["rt60"]``, from which Sabine's
  formula set the wall absorption, counted once per response) and measured / asked;
* DRR in dB: the energy within +-2.5 ms of the direct path against all the energy after that
  window. The direct path arrives at the source-microphone distance over the speed of sound,
  plus the delay of the simulator's fractional-delay filter; the response's largest sample is
  not used, because a later one can exceed the direct path's.

The JSON gives counts and, per statistic, mean, std and percentiles 5, 25, 50, 75 and 95, for all
responses and per kind of source (speech, noise, sfx, music). With ``--compare`` it gives the
same for the other corpus, the differences other minus CORPUS (so CORPUS is "before" and the
other "after"), and, over the mixture IDs both corpora hold with the same number of responses,
the largest absolute difference of one response. Both corpora's rooms are rebuilt with the
simulator installed, so ``--compare`` shows how the rooms they drew differ (other room settings,
a changed drawing of rooms); to compare two simulators, rebuild the same corpus under each.
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from spmamba_sb.data.extras import import_data_extra
from spmamba_sb.data.mixing import room_sources
from spmamba_sb.data.prepare import CONFIG_FILE
from spmamba_sb.data.room import RoomSimulator
from spmamba_sb.data.simulation_config import BACKGROUND_KINDS, SimulationConfig

#: Half width of the direct-path window of the DRR, in seconds.
DIRECT_WINDOW = 0.0025
PERCENTILES = (5, 25, 50, 75, 95)
#: Per-response values; the JSON summarises each.
STATISTICS = ("rt60_s", "rt60_target_s", "rt60_measured_over_target", "drr_db")


class CorpusError(ValueError):
    """A folder that is not a corpus, or a split without metadata."""


def corpus_files(folder: str, split: str, count: int,
                 option: str = "CORPUS") -> Tuple[SimulationConfig, List[Path]]:
    """The simulation settings of a corpus and the metadata files of the first ``count`` mixtures of ``split``.

    Arguments
    ---------
    folder : str
        Corpus folder (holds ``echo2mix_config.json`` and ``<split>/metadata/<ID>.json``).
    split : str
        Split to read.
    count : int
        Mixtures to read at most, the first by ID.
    option : str
        How the folder was given, for error messages.

    Returns
    -------
    config : SimulationConfig
        The settings the corpus was made with.
    paths : list of Path
        Metadata files, sorted by mixture ID.

    Raises
    ------
    CorpusError
        If ``folder`` holds no readable ``echo2mix_config.json`` or ``split`` no metadata.
    """
    settings_path = Path(folder) / CONFIG_FILE
    if not settings_path.is_file():
        raise CorpusError(f"{option} '{folder}' is not a corpus: it has no {CONFIG_FILE}")
    try:
        config = SimulationConfig.from_dict(json.loads(settings_path.read_text(encoding="utf-8"))["simulation"])
    except (ValueError, KeyError, TypeError) as error:
        raise CorpusError(f"{option} '{folder}': cannot read the simulation settings of {CONFIG_FILE} ({error})")
    paths = sorted(Path(folder, split, "metadata").glob("*.json"))[:count]
    if not paths:
        raise CorpusError(f"{option} '{folder}': split '{split}' has no metadata ({split}/metadata/*.json)")
    return config, paths


def direct_arrival(source: List[float], microphone: List[float], sample_rate: int) -> int:
    """Sample at which the direct path reaches a microphone in pyroomacoustics' impulse responses.

    Arguments
    ---------
    source, microphone : list of float
        Positions [3] in metres.
    sample_rate : int
        Sample rate of the response in Hz.

    Returns
    -------
    int
        Distance over the speed of sound, in samples, plus the delay of the fractional-delay filter.
    """
    pra = import_data_extra("pyroomacoustics", "room_statistics")
    distance = float(np.linalg.norm(np.subtract(source, microphone)))
    return int(round(distance / pra.constants.get("c") * sample_rate)) + pra.constants.get("frac_delay_length") // 2


def direct_to_reverberant(response: np.ndarray, arrival: int, sample_rate: int) -> float:
    """Direct-to-reverberant ratio of one impulse response.

    Arguments
    ---------
    response : np.ndarray
        Impulse response [K].
    arrival : int
        Sample of the direct path (see :func:`direct_arrival`).
    sample_rate : int
        Sample rate in Hz.

    Returns
    -------
    float
        Energy within ``DIRECT_WINDOW`` of ``arrival`` over the energy after that window, in dB.

    Example
    -------
    >>> response = np.zeros(1000)
    >>> response[100], response[300:400] = 1.0, 0.1
    >>> round(direct_to_reverberant(response, 100, 16000), 2)
    0.0
    """
    half = int(round(DIRECT_WINDOW * sample_rate))
    direct = np.sum(response[max(0, arrival - half):arrival + half + 1] ** 2)
    reverberant = np.sum(response[arrival + half + 1:] ** 2)
    return float(10 * np.log10(direct / reverberant))


def measure_mixture(simulator: RoomSimulator, metadata: Dict, decay_db: float) -> List[Dict]:
    """Rebuild a mixture's impulse responses from its metadata and measure each.

    Arguments
    ---------
    simulator : RoomSimulator
        Built from the corpus's settings.
    metadata : dict
        A mixture's metadata JSON.
    decay_db : float
        Decay range of the RT60 fit below -5 dB.

    Returns
    -------
    list of dict
        One row per source-microphone response: ``id``, ``kind`` and the values of ``STATISTICS``
        (``None`` for those of the asked RT60 where the metadata has none).
    """
    measure_rt60 = import_data_extra("pyroomacoustics", "room_statistics").experimental.measure_rt60
    room, sample_rate = metadata["room"], simulator.config.sample_rate
    target = room.get("rt60")
    rows = []
    responses = simulator.impulse_responses(room)  # one [C, K] per source
    kinds = [kind for kind, _ in room_sources(metadata)]
    for kind, position, per_microphone in zip(kinds, room["sources"], responses):
        for microphone, response in zip(room["microphones"], per_microphone):
            rt60 = float(measure_rt60(response, sample_rate, decay_db=decay_db))
            rows.append({"id": metadata["id"], "kind": kind, "rt60_s": rt60, "rt60_target_s": target,
                         "rt60_measured_over_target": rt60 / target if target else None,
                         "drr_db": direct_to_reverberant(response, direct_arrival(position, microphone, sample_rate),
                                                         sample_rate)})
    return rows


def measure_corpus(config: SimulationConfig, paths: List[Path], decay_db: float, show_progress: bool) -> List[Dict]:
    """Rows of :func:`measure_mixture` for every metadata file in ``paths``, with a progress bar if asked."""
    simulator = RoomSimulator(config)
    rows = []
    for path in tqdm(paths, desc="mixtures", unit="mix", disable=not show_progress):
        rows.extend(measure_mixture(simulator, json.loads(path.read_text(encoding="utf-8")), decay_db))
    return rows


def _distribution(values: List[Optional[float]]) -> Optional[Dict[str, float]]:
    known = np.array([value for value in values if value is not None], dtype=np.float64)
    if not known.size:
        return None
    summary = {"mean": float(np.mean(known)), "std": float(np.std(known)),
               **{f"p{point}": float(np.percentile(known, point)) for point in PERCENTILES}}
    return {key: round(value, 4) for key, value in summary.items()}


def summarise(rows: List[Dict]) -> Dict:
    """Counts, and the distribution of every statistic over all responses and per kind of source.

    Arguments
    ---------
    rows : list of dict
        As :func:`measure_mixture` returns them.

    Returns
    -------
    dict
        ``num_mixtures``, ``num_responses``, ``statistics`` (name -> mean, std, p5 ... p95, or ``None``
        without values) and ``by_kind`` (kind -> ``num_responses``, ``rt60_s``, ``drr_db``).
    """
    kinds = [kind for kind in ("speech", *BACKGROUND_KINDS) if any(row["kind"] == kind for row in rows)]
    by_kind = {kind: [row for row in rows if row["kind"] == kind] for kind in kinds}
    return {"num_mixtures": len({row["id"] for row in rows}), "num_responses": len(rows),
            "statistics": {name: _distribution([row[name] for row in rows]) for name in STATISTICS},
            "by_kind": {kind: {"num_responses": len(selected),
                               **{name: _distribution([row[name] for row in selected])
                                  for name in ("rt60_s", "drr_db")}}
                        for kind, selected in by_kind.items()}}


def _by_mixture(rows: List[Dict]) -> Dict[str, List[Dict]]:
    groups = {}
    for row in rows:
        groups.setdefault(row["id"], []).append(row)
    return groups


def _largest_difference(rows: List[Dict], other_rows: List[Dict]) -> Dict:
    """Largest absolute per-response difference over the IDs both corpora hold with as many responses."""
    one, two = _by_mixture(rows), _by_mixture(other_rows)
    shared = sorted(key for key in set(one) & set(two) if len(one[key]) == len(two[key]))
    pairs = [(first, second) for key in shared for first, second in zip(one[key], two[key])]
    largest = {}
    for name in ("rt60_s", "rt60_target_s", "drr_db"):
        differences = [abs(second[name] - first[name]) for first, second in pairs
                       if first[name] is not None and second[name] is not None]
        largest[name] = round(max(differences), 4) if differences else None
    return {"num_mixtures": len(shared), "num_responses": len(pairs), "max_abs_difference": largest}


def compare(summary: Dict, other_summary: Dict, rows: List[Dict], other_rows: List[Dict]) -> Dict:
    """Differences of two corpora's reverberation.

    Arguments
    ---------
    summary, other_summary : dict
        As :func:`summarise` returns them, "before" and "after".
    rows, other_rows : list of dict
        The rows they summarise.

    Returns
    -------
    dict
        ``difference``: after minus before, per statistic and key; ``same_ids``: the mixtures and
        responses paired by ID and the largest absolute difference of one response per statistic.
    """
    difference = {}
    for name in STATISTICS:
        first, second = summary["statistics"][name], other_summary["statistics"][name]
        difference[name] = ({key: round(second[key] - first[key], 4) for key in first}
                            if first and second else None)
    return {"difference": difference, "same_ids": _largest_difference(rows, other_rows)}


def plot(named_rows: Dict[str, List[Dict]], path: str) -> None:
    """Histograms of measured RT60 and DRR of every corpus, overlaid, with the asked RT60 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, name, label in ((axes[0], "rt60_s", "RT60 (s)"), (axes[1], "drr_db", "DRR (dB)")):
        values = {corpus: np.array([row[name] for row in rows]) for corpus, rows in named_rows.items()}
        every = np.concatenate(list(values.values()))
        bins = np.linspace(every.min(), every.max() + 1e-9, 31)
        for (corpus, corpus_values), colour in zip(values.items(), ("C0", "C1")):
            axis.hist(corpus_values, bins=bins, histtype="step", color=colour, label=corpus)
            targets = [row["rt60_target_s"] for row in named_rows[corpus] if row["rt60_target_s"] is not None]
            if name == "rt60_s" and targets:
                axis.hist(targets, bins=bins, histtype="step", linestyle="--", color=colour,
                          label=f"{corpus} (asked)")
        axis.set_xlabel(label)
        axis.set_ylabel("responses")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", metavar="CORPUS", help="corpus folder (holds echo2mix_config.json)")
    parser.add_argument("--split", default="train", help="split to measure (default train)")
    parser.add_argument("--count", type=int, default=50, help="the first COUNT mixtures by ID (default 50)")
    parser.add_argument("--decay-db", type=float, default=30.0,
                        help="decay range of the RT60 fit below -5 dB (default 30: T30)")
    parser.add_argument("--compare", metavar="OTHER_CORPUS", help="also measure this corpus and the differences")
    parser.add_argument("--plot", metavar="FIGURE", help="also save histograms of RT60 and DRR (png, pdf)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.decay_db <= 0:
        parser.error(f"--decay-db must be positive, got {args.decay_db:g}")
    folders = {"corpus": ("CORPUS", args.corpus), **({"other": ("--compare", args.compare)} if args.compare else {})}
    try:
        inputs = {role: corpus_files(folder, args.split, args.count, option)
                  for role, (option, folder) in folders.items()}
    except CorpusError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    rows = {role: measure_corpus(config, paths, args.decay_db, not args.quiet)
            for role, (config, paths) in inputs.items()}
    summaries = {role: summarise(role_rows) for role, role_rows in rows.items()}
    report = {"split": args.split, "count": args.count, "decay_db": args.decay_db,
              "direct_window_ms": 1000 * DIRECT_WINDOW,
              **{role: {"folder": folders[role][1], **summary} for role, summary in summaries.items()}}
    if args.compare:
        report.update(compare(summaries["corpus"], summaries["other"], rows["corpus"], rows["other"]))
    if args.plot:
        plot({f"{role}: {Path(folders[role][1]).name}": role_rows for role, role_rows in rows.items()}, args.plot)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
