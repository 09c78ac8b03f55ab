# The PromQL of deploy/: every alert rule's and dashboard panel's
# expression (the dashboard's variables at "All"), one a line; writes the
# Kubernetes ConfigMap's sealgate.yaml to the path given.
# argv: deploy dir, path for the config.
import json, sys, yaml
deploy, config_out = sys.argv[1], sys.argv[2]
rules = yaml.safe_load(open(f"{deploy}/prometheus/alerts.yml"))
exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
dash = json.load(open(f"{deploy}/grafana/sealgate.json"))
# The dashboard's variables as Grafana fills them with "All".
exprs += [
    t["expr"].replace("$job", ".*").replace("$instance", ".*")
    for p in dash["panels"]
    for t in p["targets"]
]
cm = yaml.safe_load(open(f"{deploy}/kubernetes/configmap.yaml"))
open(config_out, "w").write(cm["data"]["sealgate.yaml"])
for e in exprs:
    print(" ".join(e.split()))
