"""An independent, deliberately naive SPMamba forward pass that reads the reference key names.

Written from the architecture description (REFERENCE §1) and nothing else of this package:
F.unfold as in TF-GridNet, a step-by-step scan, one loop iteration per attention head. It
serves as the ground truth that the packaged model must reproduce with converted weights.
"""

import math

import torch
import torch.nn.functional as F


def reference_state_dict(n_fft, n_srcs, n_layers, n_heads, emb_dim, emb_ks, d_state, expand,
                         approx_qk_dim, seed=0):
    """Random weights under the reference implementation's key names and shapes."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.3, offset=0.0):
        return torch.randn(*shape, generator=gen) * scale + offset

    n_freqs = n_fft // 2 + 1
    qk = math.ceil(approx_qk_dim / n_freqs)
    d_model = emb_dim * emb_ks
    d_inner = expand * d_model
    dt_rank = math.ceil(d_model / 16)
    sd = {
        "conv.0.weight": rand(emb_dim, 2, 3, 3), "conv.0.bias": rand(emb_dim),
        "conv.1.weight": rand(emb_dim, offset=1.0), "conv.1.bias": rand(emb_dim),
        "deconv.weight": rand(emb_dim, 2 * n_srcs, 3, 3), "deconv.bias": rand(2 * n_srcs),
    }
    for i in range(n_layers):
        b = f"blocks.{i}."
        for path in ("intra", "inter"):
            sd[b + f"{path}_norm.gamma"] = rand(1, emb_dim, 1, 1, offset=1.0)
            sd[b + f"{path}_norm.beta"] = rand(1, emb_dim, 1, 1)
            for direction in ("forward", "backward"):
                m = b + f"{path}_mamba.{direction}_blocks.0."
                sd[m + "norm.weight"] = rand(d_model, offset=1.0)
                sd[m + "mixer.A_log"] = torch.log(torch.arange(1, d_state + 1.0)).repeat(d_inner, 1) + rand(d_inner, d_state, scale=0.1)
                sd[m + "mixer.D"] = rand(d_inner, offset=1.0)
                sd[m + "mixer.in_proj.weight"] = rand(2 * d_inner, d_model, scale=d_model**-0.5)
                sd[m + "mixer.conv1d.weight"] = rand(d_inner, 1, 4, scale=0.5)
                sd[m + "mixer.conv1d.bias"] = rand(d_inner)
                sd[m + "mixer.x_proj.weight"] = rand(dt_rank + 2 * d_state, d_inner, scale=d_inner**-0.5)
                sd[m + "mixer.dt_proj.weight"] = rand(d_inner, dt_rank, scale=dt_rank**-0.5)
                sd[m + "mixer.dt_proj.bias"] = rand(d_inner, scale=0.5, offset=-4.0)
                sd[m + "mixer.out_proj.weight"] = rand(d_model, d_inner, scale=d_inner**-0.5)
            sd[b + f"{path}_linear.weight"] = rand(2 * d_model, emb_dim, emb_ks, scale=(2 * d_model) ** -0.5)
            sd[b + f"{path}_linear.bias"] = rand(emb_dim)
        for role, width in (("Q", qk), ("K", qk), ("V", emb_dim // n_heads)):
            for h in range(n_heads):
                p = b + f"attn_conv_{role}_{h}."
                sd[p + "0.weight"] = rand(width, emb_dim, 1, 1)
                sd[p + "0.bias"] = rand(width)
                sd[p + "1.weight"] = rand(1, scale=0.1, offset=0.25)
                sd[p + "2.gamma"] = rand(1, width, 1, n_freqs, offset=1.0)
                sd[p + "2.beta"] = rand(1, width, 1, n_freqs)
        p = b + "attn_concat_proj."
        sd[p + "0.weight"] = rand(emb_dim, emb_dim, 1, 1)
        sd[p + "0.bias"] = rand(emb_dim)
        sd[p + "1.weight"] = rand(1, scale=0.1, offset=0.25)
        sd[p + "2.gamma"] = rand(1, emb_dim, 1, n_freqs, offset=1.0)
        sd[p + "2.beta"] = rand(1, emb_dim, 1, n_freqs)
    return sd


def _mamba(x, p, d_state):
    """Mamba v1 on [N, L, d_model], scanned one step at a time."""
    length = x.shape[1]
    d_inner = p["D"].shape[0]
    hidden, gate = (x @ p["in_proj.weight"].T).split(d_inner, dim=-1)
    kernel = p["conv1d.weight"].shape[-1]
    hidden = F.conv1d(hidden.transpose(1, 2), p["conv1d.weight"], p["conv1d.bias"],
                      padding=kernel - 1, groups=d_inner)[..., :length]
    hidden = F.silu(hidden).transpose(1, 2)  # [N, L, d_inner]
    dt_rank = p["dt_proj.weight"].shape[1]
    dt, Bm, Cm = (hidden @ p["x_proj.weight"].T).split([dt_rank, d_state, d_state], dim=-1)
    delta = F.softplus(dt @ p["dt_proj.weight"].T + p["dt_proj.bias"])
    A = -torch.exp(p["A_log"])
    state = x.new_zeros(x.shape[0], d_inner, d_state)
    ys = []
    for t in range(length):
        state = torch.exp(delta[:, t, :, None] * A) * state + \
            (delta[:, t] * hidden[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((state * Cm[:, t, None, :]).sum(-1) + p["D"] * hidden[:, t])
    y = torch.stack(ys, 1) * F.silu(gate)
    return y @ p["out_proj.weight"].T


def _sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _path(x, sd, prefix, emb_ks, emb_hs, d_state, eps):
    """Norm, unfold (F.unfold), BMamba, ConvTranspose1d, residual; sequences along the last axis."""
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * sd[prefix + "_norm.gamma"] + sd[prefix + "_norm.beta"]
    n_batch, channels, n_rows, seq = y.shape
    y = y.permute(0, 2, 1, 3).reshape(n_batch * n_rows, channels, seq)
    y = F.unfold(y[..., None], (emb_ks, 1), stride=(emb_hs, 1)).transpose(1, 2)  # [N, S', D*K]
    outs = []
    for direction, flip in (("forward", False), ("backward", True)):
        blk = prefix + f"_mamba.{direction}_blocks.0."
        seq_in = y.flip(1) if flip else y
        out = seq_in + _mamba(_rms(seq_in, sd[blk + "norm.weight"], eps), _sub(sd, blk + "mixer."), d_state)
        outs.append(out.flip(1) if flip else out)
    y = torch.cat(outs, -1).transpose(1, 2)
    y = F.conv_transpose1d(y, sd[prefix + "_linear.weight"], sd[prefix + "_linear.bias"], stride=emb_hs)
    return x + y.view(n_batch, n_rows, channels, seq).permute(0, 2, 1, 3)


def _proj(x, sd, prefix, eps):
    y = F.conv2d(x, sd[prefix + "0.weight"], sd[prefix + "0.bias"])
    y = F.prelu(y, sd[prefix + "1.weight"])
    mean = y.mean(dim=(1, 3), keepdim=True)
    var = y.var(dim=(1, 3), unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + eps) * sd[prefix + "2.gamma"] + sd[prefix + "2.beta"]


def _block(x, sd, b, n_heads, emb_ks, emb_hs, d_state, eps):
    n_batch, channels, old_t, old_f = x.shape
    pad_t = math.ceil((old_t - emb_ks) / emb_hs) * emb_hs + emb_ks
    pad_f = math.ceil((old_f - emb_ks) / emb_hs) * emb_hs + emb_ks
    x = F.pad(x, (0, pad_f - old_f, 0, pad_t - old_t))
    x = _path(x, sd, b + "intra", emb_ks, emb_hs, d_state, eps)
    x = _path(x.transpose(2, 3), sd, b + "inter", emb_ks, emb_hs, d_state, eps).transpose(2, 3)
    x = x[..., :old_t, :old_f]
    heads = []
    for h in range(n_heads):
        q, k, v = (_proj(x, sd, b + f"attn_conv_{r}_{h}.", eps) for r in "QKV")
        v_channels = v.shape[1]
        q, k, v = (t.transpose(1, 2).flatten(2) for t in (q, k, v))  # [B, T, C*F]
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        heads.append((weights @ v).view(n_batch, old_t, v_channels, old_f).transpose(1, 2))
    attended = torch.cat(heads, dim=1)
    return x + _proj(attended, sd, b + "attn_concat_proj.", eps)


def reference_forward(sd, mix, n_fft, stride, n_srcs, n_layers, n_heads, emb_ks, emb_hs, d_state, eps=1e-5):
    """SPMamba on [B, L] from reference-named weights; returns [B, n_srcs, L]."""
    n_batch, length = mix.shape
    std = mix.std(dim=1, keepdim=True)
    window = torch.hann_window(n_fft, dtype=mix.dtype)
    spec = torch.stft(mix / std, n_fft, stride, window=window, return_complex=True).transpose(1, 2)
    x = torch.stack([spec.real, spec.imag], 1)  # [B, 2, T, F]
    x = F.conv2d(x, sd["conv.0.weight"], sd["conv.0.bias"], padding=1)
    x = F.group_norm(x, 1, sd["conv.1.weight"], sd["conv.1.bias"], eps)
    for i in range(n_layers):
        x = _block(x, sd, f"blocks.{i}.", n_heads, emb_ks, emb_hs, d_state, eps)
    x = F.conv_transpose2d(x, sd["deconv.weight"], sd["deconv.bias"], padding=1)
    n_frames, n_freqs = x.shape[-2:]
    x = x.view(n_batch, n_srcs, 2, n_frames, n_freqs)
    est = torch.complex(x[:, :, 0], x[:, :, 1]).transpose(-1, -2).reshape(-1, n_freqs, n_frames)
    wave = torch.istft(est, n_fft, stride, window=window, length=length)
    return wave.view(n_batch, n_srcs, length) * std[:, :, None]
