"""Local alerting: rules evaluated on the host, so an operator hears about a
full disk or a dead service even with the network down.

- expr.py       the rule expression language: parse and evaluate
- engine.py     states (pending, firing, resolved), persistence
- service.py    the engine in the daemon, routing to agent/notifiers/
- defaults.py   the rules that ship with the agent
"""
