"""Thin shells around the pure core: observe, plan, apply, report. Kopf wiring is in `wiring.py`."""
