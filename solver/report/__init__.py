"""Reports: the stable JSON document (``document``) and its text / Markdown rendering (``text``).

Owns every output format. It reads evaluated plans (:mod:`solver.verify`), proofs (plain dicts from
:mod:`solver.diagnose`) and launch commands (:mod:`solver.engines`); nothing below imports it.
"""

from .document import JSON_SCHEMA_VERSION, document, to_json
from .text import render_proof, render_text

__all__ = ["JSON_SCHEMA_VERSION", "document", "render_proof", "render_text", "to_json"]
