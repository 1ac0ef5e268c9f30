"""ModelExport: the export Job (pure builders in job.py) and its status (pure planner in plan.py)."""

from .plan import ExportObserved, ExportPlan, plan_model_export

__all__ = ["ExportObserved", "ExportPlan", "plan_model_export"]
