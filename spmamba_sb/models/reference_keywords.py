"""The reference implementation's constructor keywords, turned into this package's in one place.

The published SPMamba code (and ESPnet's TF-GridNet) name the settings ``n_srcs``, ``stride``,
``n_layers``, ...; :class:`~spmamba_sb.models.spmamba.SPMamba`, :class:`~spmamba_sb.models.tfgridnet.TFGridNet`
and the reading of a reference config (:func:`~spmamba_sb.models.reference_weights.reference_settings`)
all go through :func:`to_our_keywords`.
"""

from typing import Any, Dict, Iterable, Mapping

#: The reference's keyword -> ours, where the names differ (``n_fft``, ``window``, ``emb_dim``
#: and ``eps`` are spelled the same).
REFERENCE_KEYWORDS = {
    "n_srcs": "num_spks",
    "stride": "hop_length",
    "n_imics": "num_mics",
    "n_layers": "num_blocks",
    "attn_n_head": "num_heads",
    "attn_approx_qk_dim": "attention_qk_dim",
    "emb_ks": "emb_kernel_size",
    "emb_hs": "emb_hop_size",
    "lstm_hidden_units": "lstm_hidden_dim",
}
#: Reference keywords with one supported value here; they are checked, then dropped.
FIXED_REFERENCE_KEYWORDS = {"activation": "prelu"}


def to_our_keywords(settings: Mapping[str, Any], ignored: Iterable[str] = ()) -> Dict[str, Any]:
    """Settings given under the reference implementation's keywords or ours, under ours.

    Arguments
    ---------
    settings : Mapping
        Keyword -> value. Keywords that are not the reference's come back unchanged, so the
        caller rejects those it does not take.
    ignored : iterable of str
        Reference keywords that the caller's model accepts and does not use, as the
        reference does (``input_dim``); they are dropped.

    Returns
    -------
    dict
        Our keyword -> value, in the order given.

    Raises
    ------
    ValueError
        If a reference keyword and ours are both given with different values, or
        ``activation`` is not ``"prelu"``.

    Example
    -------
    >>> to_our_keywords({"n_srcs": 3, "stride": 64, "emb_dim": 16, "input_dim": 1}, ignored=["input_dim"])
    {'num_spks': 3, 'hop_length': 64, 'emb_dim': 16}
    >>> to_our_keywords({"num_spks": 3, "n_srcs": 2})
    Traceback (most recent call last):
    ...
    ValueError: num_spks=3 and n_srcs=2 are the same setting with different values; give one of them
    """
    ignored = set(ignored)
    ours: Dict[str, Any] = {}
    given_as: Dict[str, str] = {}  # our keyword -> the keyword it was given under
    for key, value in settings.items():
        if key in ignored:
            continue
        if key in FIXED_REFERENCE_KEYWORDS:
            if value != FIXED_REFERENCE_KEYWORDS[key]:
                raise ValueError(f"{key}={value!r} is not supported; only {FIXED_REFERENCE_KEYWORDS[key]!r} "
                                 "(as published)")
            continue
        name = REFERENCE_KEYWORDS.get(key, key)
        if name in ours and ours[name] != value:
            raise ValueError(f"{given_as[name]}={ours[name]!r} and {key}={value!r} are the same setting with "
                             "different values; give one of them")
        ours.setdefault(name, value)
        given_as.setdefault(name, key)
    return ours


def reference_keyword(name: str) -> str:
    """The reference's keyword for one of ours (our own where the two are spelled the same).

    Example
    -------
    >>> reference_keyword("hop_length"), reference_keyword("n_fft")
    ('stride', 'n_fft')
    """
    return {ours: theirs for theirs, ours in REFERENCE_KEYWORDS.items()}.get(name, name)
