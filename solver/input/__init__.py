"""Input: what a user writes and the catalogs it refers to, validated before anything is computed.

Owns the instance schema (pydantic; every field documented, unknown keys and silent coercions
rejected), the model and GPU cards with the Hugging Face ``config.json`` loader that turns a config
into an :class:`~solver.input.catalog.Architecture`, the bad-input message (:class:`InputError`:
file, JSON path, value, what is accepted) and the ``--strategy`` text. It imports nothing of the
project: every other layer builds on it.
"""
