"""Hydra plugin module: registers churnml's config dataclasses so plain Hydra (DVC's ``dvc exp run``) composes
``conf/`` on them.

Hydra imports every module under the ``hydra_plugins`` namespace when it scans for plugins; DVC puts
``[hydra] plugins_path`` (``src``, in ``.dvc/config``) on ``sys.path`` for that scan. It defines no plugin
class: importing it is the whole job.
"""

from churnml.config import register_schema

register_schema()
