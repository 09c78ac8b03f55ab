# The alerts of deploy/prometheus/alerts.yml, one a line: its name, its
# runbook_url, and "tested" when alerts.test.yml expects it firing at
# least once and silent at least once at a time past its `for` (a silent
# case inside the `for` proves nothing), else "untested"; then a last line
# "rules N" with how many rules (recording and alerting) the file has.
# argv: deploy dir.
import re, sys, yaml
deploy = sys.argv[1]
rules = yaml.safe_load(open(f"{deploy}/prometheus/alerts.yml"))
tests = yaml.safe_load(open(f"{deploy}/prometheus/alerts.test.yml"))
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
def seconds(text):
    return sum(int(n) * UNIT[u] for n, u in re.findall(r"(\d+)([smhd])", str(text)))
waits = {r["alert"]: seconds(r.get("for", "0s"))
         for g in rules["groups"] for r in g["rules"] if "alert" in r}
firing, silent = set(), set()
for t in tests["tests"]:
    for case in t.get("alert_rule_test", []):
        name = case["alertname"]
        if case.get("exp_alerts"):
            firing.add(name)
        elif seconds(case["eval_time"]) >= waits.get(name, 0):
            silent.add(name)
count = 0
for g in rules["groups"]:
    for r in g["rules"]:
        count += 1
        if "alert" in r:
            name = r["alert"]
            state = "tested" if name in firing and name in silent else "untested"
            print(name, r.get("annotations", {}).get("runbook_url", "-"), state)
print("rules", count)
