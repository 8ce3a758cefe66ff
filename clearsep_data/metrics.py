"""Signal-level metrics: SDR and SI-SDR (in dB), on torch tensors over the last axis.

These serve three places with one definition: the training loss, the engine's reference-free
remix scores (Re-SDR, Re-SI-SDR) and evaluation against references (SDR, SI-SDR, and their
improvements over the mixture). They are defined with the loss, in
``clearsep_data.modeling.losses`` (the model package imports nothing else of ClearSep), and
re-exported here for the data side.
"""

from __future__ import annotations

from clearsep_data.modeling.losses import EPS, energy_db, sdr, si_sdr

__all__ = ["EPS", "energy_db", "sdr", "si_sdr"]
