"""Pure rollout planning: (spec, status, observations) -> (desired objects, deletions, next status)."""

from .plan import Observed, Plan, plan_model_deployment

__all__ = ["Observed", "Plan", "plan_model_deployment"]
