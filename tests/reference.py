"""NumPy (float64) reference of the cell equations in DESIGN.md.

Written from the equations, not from the library: every function takes the
weights as a dict keyed by the Keras weight path suffix ("kernel",
"kernel_norm/gamma", ...) and returns `(outputs, final_states)` with
`outputs` of shape `(batch, time, units)`.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(z, w, name, eps):
    """Ba et al. 2016: (z - mean) / sqrt(var + eps) * gamma + beta."""
    mean = z.mean(axis=-1, keepdims=True)
    var = z.var(axis=-1, keepdims=True)
    return (z - mean) / np.sqrt(var + eps) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def zoneout(new, old, rate):
    """Inference-time zoneout: the expectation of the random keep."""
    return rate * old + (1.0 - rate) * new


def simple_rnn(x, w, layer_norm_on=False, eps=1e-3, zoneout_rate=0.0, h0=None):
    batch, time, _ = x.shape
    units = w["recurrent_kernel"].shape[0]
    h = np.zeros((batch, units)) if h0 is None else h0
    outputs = []
    for t in range(time):
        zx = x[:, t] @ w["kernel"]
        zh = h @ w["recurrent_kernel"]
        if layer_norm_on:
            zx = layer_norm(zx, w, "kernel_norm", eps)
            zh = layer_norm(zh, w, "recurrent_norm", eps)
        h_new = np.tanh(zx + zh + w.get("bias", 0.0))
        h = zoneout(h_new, h, zoneout_rate)
        outputs.append(h)
    return np.stack(outputs, axis=1), [h]


def lstm(
    x, w, layer_norm_on=False, peephole=False, eps=1e-3,
    zoneout_h=0.0, zoneout_c=0.0, h0=None, c0=None,
):
    batch, time, _ = x.shape
    units = w["recurrent_kernel"].shape[0]
    h = np.zeros((batch, units)) if h0 is None else h0
    c = np.zeros((batch, units)) if c0 is None else c0
    outputs = []
    for t in range(time):
        zx = x[:, t] @ w["kernel"]
        zh = h @ w["recurrent_kernel"]
        if layer_norm_on:
            zx = layer_norm(zx, w, "kernel_norm", eps)
            zh = layer_norm(zh, w, "recurrent_norm", eps)
        z = zx + zh + w.get("bias", 0.0)
        zi, zf, zg, zo = np.split(z, 4, axis=-1)
        if peephole:
            zi = zi + w["input_gate_peephole_weights"] * c
            zf = zf + w["forget_gate_peephole_weights"] * c
        i, f, g = sigmoid(zi), sigmoid(zf), np.tanh(zg)
        c_new = f * c + i * g
        if peephole:
            zo = zo + w["output_gate_peephole_weights"] * c_new
        o = sigmoid(zo)
        c_out = layer_norm(c_new, w, "state_norm", eps) if layer_norm_on else c_new
        h_new = o * np.tanh(c_out)
        h = zoneout(h_new, h, zoneout_h)
        c = zoneout(c_new, c, zoneout_c)
        outputs.append(h)
    return np.stack(outputs, axis=1), [h, c]


def gru(
    x, w, reset_after=True, layer_norm_on=False, eps=1e-3, zoneout_rate=0.0,
    h0=None,
):
    batch, time, _ = x.shape
    units = w["recurrent_kernel"].shape[0]
    h = np.zeros((batch, units)) if h0 is None else h0
    bias = w.get("bias")
    W, U = w["kernel"], w["recurrent_kernel"]
    outputs = []
    for t in range(time):
        zx = x[:, t] @ W
        if layer_norm_on:
            zx = layer_norm(zx, w, "kernel_norm", eps)
        if reset_after:
            zh = h @ U
            if layer_norm_on:
                zh = layer_norm(zh, w, "recurrent_norm", eps)
            if bias is not None:
                zx, zh = zx + bias[0], zh + bias[1]
            xz, xr, xh = np.split(zx, 3, axis=-1)
            hz, hr, hh = np.split(zh, 3, axis=-1)
            z, r = sigmoid(xz + hz), sigmoid(xr + hr)
            candidate = np.tanh(xh + r * hh)
        else:
            if bias is not None:
                zx = zx + bias
            xz, xr, xh = np.split(zx, 3, axis=-1)
            zh = h @ U[:, : 2 * units]
            if layer_norm_on:
                zh = layer_norm(zh, w, "recurrent_norm", eps)
            hz, hr = np.split(zh, 2, axis=-1)
            z, r = sigmoid(xz + hz), sigmoid(xr + hr)
            hh = (r * h) @ U[:, 2 * units :]
            if layer_norm_on:
                hh = layer_norm(hh, w, "candidate_norm", eps)
            candidate = np.tanh(xh + hh)
        h_new = z * h + (1.0 - z) * candidate
        h = zoneout(h_new, h, zoneout_rate)
        outputs.append(h)
    return np.stack(outputs, axis=1), [h]
