"""FeaturePipeline controller. Until the capability lands, its reconcile only accepts the spec."""

from ferry.api import KINDS
from ferry.controllers._worker import accepting_reconcile, register

register(KINDS["FeaturePipeline"], accepting_reconcile(KINDS["FeaturePipeline"]))
