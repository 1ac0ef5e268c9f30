"""The shadow comparator (spec.rollout.shadow.compare): receives mirrored requests, sends each to
the stable and the shadow revision, compares the answers and publishes the result as Prometheus
metrics. `compare` is the pure comparison, `server` the HTTP service, `objects` its Deployment and
Service. Run it with `python -m modelpilot.comparator --help` (the operator image has it).
"""
