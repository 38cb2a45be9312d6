"""probe: latents, alignment metrics and cross-embodiment retrieval for human/robot co-trained models.

Data flows one way: readers -> extraction -> latent store -> metrics / index /
projection -> report / dashboard. The store and the :class:`Latents` value are
the contract between the parts.
"""

from probe.errors import ProbeError
from probe.latents import Latents
from probe.store import Store, StoreWriter, open_store, write_store

__version__ = "0.1.0"
__all__ = ["Latents", "ProbeError", "Store", "StoreWriter", "open_store", "write_store", "__version__"]
