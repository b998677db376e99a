"""Pure builders: a FineTuneJob (`meta.Owner`) and the operator's `Settings` in, manifests (dicts) out.

`workload.desired` lists every object a job needs; `pod`, `storage` and `meta` hold the pieces. Nothing here
talks to the API server or reads the environment.
"""
