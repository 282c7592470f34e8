"""What the node agent and the cloud route controller share as long-running daemons.

Scheduling of passes (`schedule`), the health and metrics server (`server`), the shared route
metrics (`metrics`), Kubernetes Events (`events`) and Node conditions (`condition`), the
deletion guard (`safety`), logging (`logs`), the checks of their common options (`config`) and
what their manifests share (`deploy`). The agent and the controller stand side by side on
this package; neither imports the other.
"""
