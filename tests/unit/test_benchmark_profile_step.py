"""benchmarks/profile_step.py: the groups it puts GPU kernels in and its options, on any machine; on a GPU
a tiny profiled training step of the 8 kHz model."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_benchmark

profile_step = load_benchmark("profile_step")


@pytest.mark.parametrize("kernel,expected", [
    ("void selective_scan_fwd_kernel<Selective_Scan_fwd_kernel_traits<32, 4, true>>(SSMParamsBase)", "selective scan"),
    ("_scan_backward_kernel", "selective scan"),  # the Triton scan
    ("_conv_silu_forward", "causal conv"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matrix products"),
    ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", "matrix products"),
    ("void at::native::elementwise_kernel<128, 2, at::native::direct_copy_kernel_cuda>", "copies and layout"),
    ("Memcpy DtoD (Device -> Device)", "copies and layout"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>", "norms and reductions"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", "element-wise"),
    ("triton_poi_fused_mul_sigmoid_0", "element-wise"),  # torch.compile's fused kernels
    ("void at::native::(anonymous namespace)::indexSelectLargeIndex<float, long>", "other"),
])
def test_kernels_go_to_the_group_their_name_says(kernel, expected):
    assert profile_step.group(kernel) == expected


def test_options_default_to_the_published_16k_model_on_both_kernels():
    args = profile_step.parse_args([])
    assert args.backends == ["cuda", "triton"] and args.batches == [1] and not args.compile
    assert (args.sample_rate, args.n_fft, args.hop_length, args.seconds) == (16000, 512, 128, 4.0)
    quick = profile_step.parse_args(["--n-fft", "256", "--hop-length", "64", "--sample-rate", "8000", "--batches", "4",
                                     "8", "--compile"])
    assert quick.batches == [4, 8] and quick.compile and quick.n_fft == 256


@pytest.mark.gpu
@pytest.mark.slow
def test_a_tiny_step_is_profiled_and_its_kernel_time_grouped():
    command = [sys.executable, "benchmarks/profile_step.py", "--backends", "torch", "--steps", "1", "--timed", "1",
               "--seconds", "0.25", "--sample-rate", "8000", "--n-fft", "256", "--hop-length", "64", "--shapes"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout.splitlines()
    record = json.loads(lines[0])
    assert record["backend"] == "torch" and record["batch"] == 1 and record["wall_ms"] > 0
    assert record["total_ms"] == pytest.approx(sum(record["groups_ms"].values()), abs=0.1 * len(record["groups_ms"]))
    assert record["groups_ms"]["matrix products"] > 0 and record["top_operators_ms"]
