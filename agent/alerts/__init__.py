"""Local alerting: rules evaluated on the host, so an operator hears about a
full disk or a dead service even with the network down.

- expr.py       the rule expression language: parse and evaluate
- model.py      what a notification carries
- notifiers.py  journal, exec, file, webhook, alertmanager
- engine.py     states (pending, firing, resolved), persistence, routing
- defaults.py   the rules that ship with the agent
"""
