"""Pure rollout planning: (spec, status, observations) -> (desired objects, deletions, next status)."""

from .plan import Observed, Plan, completed_a_step, plan_model_deployment
from .status import first_status_wait

__all__ = ["Observed", "Plan", "completed_a_step", "first_status_wait", "plan_model_deployment"]
