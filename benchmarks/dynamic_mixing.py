#!/usr/bin/env python3
"""Dynamic mixing throughput on one CPU core: mixtures per second drawn from a training CSV.

    python benchmarks/dynamic_mixing.py --data DIR [--num-spks 2] [--seconds 4] [--count 500]

Builds the source pool of ``DIR/train.csv`` (timed apart), then draws ``--count`` mixtures of
``--seconds`` seconds in one process with one thread, as one DataLoader worker would. Prints
one JSON object: the pool's size and the mixtures (and seconds of audio) per second.
"""

import argparse
import json
import os
import time

import soundfile as sf
import torch

from spmamba_sb.data.dynamic_mixing import DynamicMixingDataset, SourcePool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding train.csv")
    parser.add_argument("--num-spks", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    csv_path = os.path.join(args.data, "train.csv")
    start = time.perf_counter()
    pool = SourcePool.from_csv(csv_path, args.num_spks, args.data)
    pool_seconds = time.perf_counter() - start
    sample_rate = sf.info(pool.speakers[pool.speaker_ids[0]][0][0]).samplerate
    dataset = DynamicMixingDataset(pool, args.num_spks, int(args.seconds * sample_rate), seed=0, epoch_size=args.count)
    start = time.perf_counter()
    for index in range(args.count):
        dataset[index]
    elapsed = time.perf_counter() - start
    print(json.dumps({"speakers": pool.num_speakers, "sources": pool.num_sources, "backgrounds": len(pool.backgrounds),
                      "pool_build_s": round(pool_seconds, 2), "sample_rate": sample_rate, "seconds": args.seconds,
                      "mixtures_per_s": round(args.count / elapsed, 1),
                      "audio_s_per_s": round(args.count * args.seconds / elapsed, 1)}))


if __name__ == "__main__":
    main()
