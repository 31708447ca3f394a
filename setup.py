"""Packaging for spmamba-sb."""

from setuptools import find_packages, setup

# Simulating the Echo2Mix / demo corpora (spmamba-prepare-echo2mix, spmamba-prepare-demo): loudness, rooms, espeak-ng.
DATA = ["pyloudnorm>=0.2,<0.3", "pyroomacoustics>=0.10.1,<0.11", "espeakng-loader>=0.2.4,<0.3"]

setup(
    name="spmamba-sb",
    version="0.1.0",
    description="SPMamba speech separation as a SpeechBrain plugin, with CPU and CUDA Mamba backends",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["spmamba_sb", "spmamba_sb.*"]),
    install_requires=[
        # The suite passes with the pairs 2.9.1 and 2.11.0 (README); make test and CI use 2.11.0.
        # torchaudio 2.11.1 declares torch>=2.11 but does not load with torch 2.11.0 (an undefined
        # symbol of a later torch), and it is what a plain resolver picks beside torch 2.11.0.
        "torch>=2.9,<2.12",
        "torchaudio>=2.9,<2.12,!=2.11.1",
        "speechbrain>=1.1,<1.2",
        "hyperpyyaml>=1.2",
        "soundfile>=0.12",
        "numpy",
        "tqdm",
        "fast_bss_eval>=0.1.4",
        "matplotlib",
        "scipy>=1.10",
    ],
    extras_require={
        "cuda": ["mamba-ssm>=2.2"],
        "scoring": ["pystoi", "pesq"],  # STOI and PESQ columns of spmamba-evaluate
        "data": DATA,
        "benchmark": ["mambapy==1.2.0"],  # the Blelloch-scan baseline of benchmarks/scan_cpu.py
        "test": ["pytest>=8", "pytest-xdist", "hypothesis", *DATA],  # the data tests simulate corpora
    },
    entry_points={
        "console_scripts": [
            "spmamba-separate=spmamba_sb.cli:separate_main",
            "spmamba-export=spmamba_sb.cli:export_main",
            "spmamba-evaluate=spmamba_sb.cli:evaluate_main",
            "spmamba-prepare-echo2mix=spmamba_sb.data.prepare_cli:echo2mix_main",
            "spmamba-prepare-demo=spmamba_sb.data.prepare_cli:demo_main",
            "spmamba-prepare-real=spmamba_sb.data.prepare_cli:real_main",
        ]
    },
)
