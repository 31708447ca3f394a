"""Peak memory of separating long recordings on a CPU with ``SPMambaSeparation.separate_file``.

Each measurement runs in its own process and reports its peak resident set size
(``ru_maxrss``) and wall time. Two parts:

1. a small model (published STFT; 1 block, D=4, K=4, expand 1) on 1- and 10-minute files: chunked
   separation keeps the peak independent of the file's length;
2. the published model on one chunk (8 s by default): the peak a chunk costs, which with
   the O(L) input and output buffers bounds the peak for a file of any length.

    python benchmarks/long_audio_cpu.py [--minutes 1 10] [--chunk-seconds 8]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial

import numpy as np
import soundfile as sf
import torch

from spmamba_sb.nnet.bmamba import BMamba

RATE = 16000


def _measure(model_dir: str, wav: str, chunk_seconds: float) -> dict:
    """Separate ``wav`` in this process; peak RSS in GiB and seconds."""
    from spmamba_sb.inference import SPMambaSeparation

    separator = SPMambaSeparation.from_hparams(source=model_dir, savedir=model_dir)
    start = time.perf_counter()
    out = separator.separate_file(wav, chunk_seconds=chunk_seconds, overlap_seconds=chunk_seconds / 4)
    return {"seconds_of_audio": out.shape[1] / RATE, "wall_s": round(time.perf_counter() - start, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def _child(model_dir: str, wav: str, chunk_seconds: float) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"from long_audio_cpu import _measure; print(json.dumps(_measure({model_dir!r}, {wav!r}, {chunk_seconds})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _model(folder: str, **masknet_args) -> str:
    from spmamba_sb.model_folder import write_model_folder
    from spmamba_sb.trio import Encoder, MaskNet

    torch.manual_seed(0)
    write_model_folder(folder, RATE, Encoder(512, 128), MaskNet(n_fft=512, **masknet_args), save_weights=True)
    return folder


def _wav(folder: str, seconds: float) -> str:
    path = os.path.join(folder, f"mix_{seconds:g}s.wav")
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32), RATE, subtype="PCM_16")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", nargs="+", type=float, default=[1, 10])
    parser.add_argument("--chunk-seconds", type=float, default=8.0)
    args = parser.parse_args()
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
              "chunk_seconds": args.chunk_seconds, "small_model": {}, "published_model_one_chunk": None}
    with tempfile.TemporaryDirectory() as tmp:
        small = _model(os.path.join(tmp, "small"), num_blocks=1, emb_dim=4, emb_kernel_size=4, num_heads=1,
                       sequence_layer=partial(BMamba, d_state=4, expand=1, scan_backend="torch"))
        for minutes in args.minutes:
            report["small_model"][f"{minutes:g} min"] = _child(small, _wav(tmp, minutes * 60), args.chunk_seconds)
        published = _model(os.path.join(tmp, "published"), sequence_layer=partial(BMamba, scan_backend="torch"))
        report["published_model_one_chunk"] = _child(published, _wav(tmp, args.chunk_seconds), args.chunk_seconds)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
