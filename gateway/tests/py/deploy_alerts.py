# The alerts of deploy/prometheus/alerts.yml, one a line: its name, its
# runbook_url, and "tested" when alerts.test.yml expects it firing at
# least once and silent at least once (else "untested"); then a last line
# "rules N" with how many rules (recording and alerting) the file has.
# argv: deploy dir.
import sys, yaml
deploy = sys.argv[1]
rules = yaml.safe_load(open(f"{deploy}/prometheus/alerts.yml"))
tests = yaml.safe_load(open(f"{deploy}/prometheus/alerts.test.yml"))
firing, silent = set(), set()
for t in tests["tests"]:
    for case in t.get("alert_rule_test", []):
        (firing if case.get("exp_alerts") else silent).add(case["alertname"])
count = 0
for g in rules["groups"]:
    for r in g["rules"]:
        count += 1
        if "alert" in r:
            name = r["alert"]
            state = "tested" if name in firing and name in silent else "untested"
            print(name, r.get("annotations", {}).get("runbook_url", "-"), state)
print("rules", count)
