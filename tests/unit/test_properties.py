"""Properties over random lengths, batch sizes, speaker counts and signal scales (hypothesis).

The model and the trio give finite [B, S, L] / [B, L, S] output for any input at least one
STFT frame long, at any scale, and scale with it; the PIT losses ignore the order of the
estimates; SI-SNR ignores the estimate's scale while SNR does not, and SNR ignores a common
scale of estimate and reference. ``test_losses.py`` and ``models/test_spmamba.py`` hold one
fixed example of each; these draw many.
"""

import functools
import sys
import warnings

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from speechbrain.utils.importutils import LazyModule

from spmamba_sb import SPMamba
from spmamba_sb.losses import neg_si_snr, neg_snr, pit_si_snr_loss, pit_snr_loss
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.trio import Decoder, Encoder, MaskNet, separate


def _forget_broken_speechbrain_redirects():
    """Drop SpeechBrain's lazy redirects to packages that are not installed (k2, flair, ...)
    from ``sys.modules``: reading their ``__file__`` raises ImportError, not AttributeError,
    which breaks hypothesis's scan of every loaded module (as in speechbrain/speechbrain#2995)."""
    for name, module in list(sys.modules.items()):
        if isinstance(module, LazyModule):
            try:
                with warnings.catch_warnings():  # loading a working redirect warns that it is deprecated
                    warnings.simplefilter("ignore")
                    hasattr(module, "__file__")
            except ImportError:
                del sys.modules[name]


_forget_broken_speechbrain_redirects()

N_FFT, HOP = 32, 8
TINY = dict(emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17)
MAMBA = dict(d_state=4, expand=2, scan_backend="torch")
FEW = settings(max_examples=12, deadline=None, database=None)

batches = st.integers(1, 3)
lengths = st.integers(N_FFT, 400)
speakers = st.sampled_from([2, 3])
seeds = st.integers(0, 2**16)
scales = st.floats(-4, 4).map(lambda power: 10.0**power)  # 1e-4 to 1e4, log-uniform


@functools.lru_cache(maxsize=None)
def _model(num_spks):
    torch.manual_seed(num_spks)
    return SPMamba(num_spks=num_spks, n_fft=N_FFT, hop_length=HOP, **TINY, **MAMBA).eval()


@functools.lru_cache(maxsize=None)
def _trio(num_spks):
    masknet = MaskNet(num_spks=num_spks, n_fft=N_FFT, sequence_layer=functools.partial(BMamba, **MAMBA), **TINY).eval()
    masknet.load_state_dict(_model(num_spks).masknet.state_dict())
    return Encoder(N_FFT, HOP), masknet, Decoder(N_FFT, HOP)


def _mix(batch, length, seed, scale):
    """[B, L] of unit-variance noise times ``scale``."""
    return scale * torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


@FEW
@given(batch=batches, length=lengths, num_spks=speakers, seed=seeds, scale=scales)
def test_model_output_is_finite_and_scales_with_the_input(batch, length, num_spks, seed, scale):
    mix = _mix(batch, length, seed, 1.0)
    with torch.no_grad():
        unit, scaled = _model(num_spks)(mix), _model(num_spks)(scale * mix)
    assert scaled.shape == (batch, num_spks, length) and torch.isfinite(scaled).all()
    torch.testing.assert_close(scaled / scale, unit, rtol=1e-3, atol=1e-4 * unit.abs().max().item())


@FEW
@given(batch=batches, length=lengths, num_spks=speakers, seed=seeds, scale=scales)
def test_trio_output_is_finite_and_equals_the_model(batch, length, num_spks, seed, scale):
    mix = _mix(batch, length, seed, scale)
    with torch.no_grad():
        trio, model = separate(mix, *_trio(num_spks)), _model(num_spks)(mix).transpose(1, 2)
    assert trio.shape == (batch, length, num_spks) and torch.isfinite(trio).all()
    torch.testing.assert_close(trio, model, rtol=1e-4, atol=1e-4 * model.abs().max().item())


def _targets_and_estimates(batch, length, num_sources, seed, scale):
    """[B, L, S] references of the given scale, and estimates 10 % off them (an SNR near 20 dB)."""
    gen = torch.Generator().manual_seed(seed)
    targets = scale * torch.randn(batch, length, num_sources, generator=gen)
    return targets, targets + 0.1 * scale * torch.randn(batch, length, num_sources, generator=gen)


loss_batches = st.integers(1, 4)
loss_lengths = st.integers(100, 2000)
source_counts = st.integers(2, 4)
# The losses add 1e-8 to both energies: scales where that floor is negligible (error energy >= 1e-4).
loss_scales = st.floats(-1, 3).map(lambda power: 10.0**power)
gains = st.floats(-1, 1).map(lambda power: 10.0**power)
far_gains = st.one_of(st.floats(0.5, 1), st.floats(-1, -0.5)).map(lambda power: 10.0**power)  # 10 dB or more


@FEW
@given(batch=loss_batches, length=loss_lengths, num_sources=source_counts, seed=seeds, scale=scales,
       data=st.data())
def test_pit_losses_ignore_the_order_of_the_estimates(batch, length, num_sources, seed, scale, data):
    targets, estimates = _targets_and_estimates(batch, length, num_sources, seed, scale)
    order = data.draw(st.permutations(range(num_sources)))
    for loss in (pit_snr_loss, pit_si_snr_loss):
        shuffled = loss(targets, estimates[..., order])
        assert torch.isfinite(shuffled).all()
        torch.testing.assert_close(shuffled, loss(targets, estimates), rtol=1e-5, atol=1e-4)


@FEW
@given(length=loss_lengths, num_sources=source_counts, seed=seeds, scale=loss_scales, gain=gains)
def test_si_snr_ignores_the_estimate_scale_and_snr_a_common_one(length, num_sources, seed, scale, gain):
    targets, estimates = _targets_and_estimates(1, length, num_sources, seed, scale)
    targets, estimates = targets[0], estimates[0]  # [L, S], the base losses' layout
    torch.testing.assert_close(neg_si_snr(gain * estimates, targets), neg_si_snr(estimates, targets),
                               rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(neg_snr(gain * estimates, gain * targets), neg_snr(estimates, targets),
                               rtol=1e-4, atol=2e-3)


@FEW
@given(length=loss_lengths, num_sources=source_counts, seed=seeds, scale=loss_scales, gain=far_gains)
def test_snr_penalises_a_wrong_estimate_scale(length, num_sources, seed, scale, gain):
    """A gain of at least 10 dB either way costs an estimate 10 % off its reference over 10 dB."""
    targets, estimates = _targets_and_estimates(1, length, num_sources, seed, scale)
    targets, estimates = targets[0], estimates[0]  # [L, S]
    assert (neg_snr(gain * estimates, targets) > neg_snr(estimates, targets) + 10).all()
