"""Where the input tables come from: the simulator (the default data and its ground truth) and ingest adapters.

Owns :mod:`~churnml.sources.simulate` (a synthetic B2B SaaS portfolio written in the contract's shape) and
:mod:`~churnml.sources.ingest` (third-party layouts mapped onto the contract). It writes contract tables and
may import only the contract below it; nothing here knows about spines, labels, features or models.
"""
