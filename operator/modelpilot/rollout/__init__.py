"""Pure rollout planning: (spec, status, observations) -> (desired objects, deletions, next status)."""

from .plan import Observed, Plan, completed_a_step, plan_model_deployment

__all__ = ["Observed", "Plan", "completed_a_step", "plan_model_deployment"]
