"""The MLflow entry point of models registered before the package had subpackages (kept so they still load).

Every registered churnml model carries a models-from-code file that MLflow runs when the model is loaded.
Models registered before the layout change name ``churnml.tracking.set_pyfunc_model`` in that file; the
function now lives in :mod:`churnml.modeling.tracking`. Registered versions are immutable, so this
module keeps that old name importable rather than asking every deployment to re-register. New
registrations name :mod:`churnml.modeling.tracking` directly (``churnml.modeling.tracking._CODE``).
"""

from churnml.modeling.tracking import set_pyfunc_model

__all__ = ["set_pyfunc_model"]
