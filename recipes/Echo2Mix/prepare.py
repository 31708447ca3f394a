#!/usr/bin/env python3
"""Echo2Mix data preparation: the paper's noisy, reverberant two-speaker LibriSpeech mixtures.

Real corpora (same as the ``spmamba-prepare-echo2mix`` command)::

    python recipes/Echo2Mix/prepare.py --librispeech LibriSpeech --wham wham_noise --dnr dnr_v2 --out data/echo2mix

Download-free demo corpus (same as the ``spmamba-prepare-demo`` command)::

    python recipes/Echo2Mix/prepare.py --demo --out data/echo2mix-demo

``--help`` (after ``--demo`` for the demo) lists every option; see README.md next to this file.
"""

import sys

from spmamba_sb.data.prepare_cli import demo_main, echo2mix_main

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if "--demo" in arguments:
        arguments.remove("--demo")
        sys.exit(demo_main(arguments))
    sys.exit(echo2mix_main(arguments))
