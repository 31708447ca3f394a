"""BMamba: forward half is causal, backward half anti-causal, outputs concatenated."""

import torch

from spmamba_sb.nnet.bmamba import BMamba


def test_directions():
    layer = BMamba(d_model=6, d_state=4, expand=2, scan_backend="torch")
    x = torch.randn(6, 2, 25)
    changed = x.clone()
    changed[..., 12] += 1.0
    with torch.no_grad():
        y, y_changed = layer(x), layer(changed)
    assert y.shape == (12, 2, 25)
    forward, backward = (y_changed - y).abs().split(6)
    assert forward[..., :12].max() == 0 and forward[..., 12:].max() > 0
    assert backward[..., 13:].max() == 0 and backward[..., :13].max() > 0


def test_residual_rmsnorm_structure():
    layer = BMamba(d_model=6, d_state=4, expand=2, scan_backend="torch")
    x = torch.randn(6, 2, 9)
    with torch.no_grad():
        normed = x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + 1e-5)  # RMSNorm over channels, weight 1
        expected_forward = x + layer.forward_mixer(normed)
        flipped = x.flip(-1)
        expected_backward = (flipped + layer.backward_mixer(normed.flip(-1))).flip(-1)
        torch.testing.assert_close(layer(x), torch.cat([expected_forward, expected_backward]))
    assert layer.forward_norm.eps == 1e-5
