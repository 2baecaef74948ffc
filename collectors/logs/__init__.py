"""The log collector: follows files through rotation, matches rules and runs
detectors. Split by responsibility:

- config.py     the [[logs]] tables
- files.py      following files: identity, rotation, offsets (tailer design note)
- matcher.py    many patterns in one pass (Hyperscan, or `re`)
- rules.py      rules, events, rate limits
- detectors/    failed logins, volume spikes, new error signatures: one module each
- defaults.py   the rule set that ships with the agent
- tailer.py     the long-running collector that ties them together
"""
